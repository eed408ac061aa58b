"""Hot reload: re-read the config file and apply it to the running daemon (docs/service.md).

Triggered by SIGHUP (``systemctl reload edged``) or the control socket's ``reload`` command
(``edged reload``). A reload validates the file first: an invalid file changes nothing (each
problem is logged with file:line). A valid one is compared with the running config
(:mod:`edged.configdiff`) and applied on the event loop without touching the MQTT session or
the outbox:

* the adapter runners whose devices or adapter settings changed are stopped (their devices'
  running commands finish first; each step bounded) and new ones started; untouched runners
  keep running;
* the bridge's device table, the router's device set and the uplink's subscriptions, the
  registrar's and the device-management agent's device lists follow;
* ``logging.level``, ``status.*``, ``commands.*`` and ``platform.qos`` apply at once;
* anything else read once at start (connection, storage, registration, management, control
  socket) is logged as needing a restart and keeps its running value.

Requests coalesce: one arriving during a reload runs one more reload after it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from edged import registry
from edged.adapters.base import Adapter, AdapterContext
from edged.bridge import Bridge
from edged.config import Config, load_config
from edged.configdiff import ConfigDiff, diff_configs, effective_config
from edged.dm.agent import DMAgent
from edged.errors import ConfigError
from edged.health import HealthReport
from edged.model import DeviceIdentity, DeviceState
from edged.registrar import Registrar
from edged.router import Router
from edged.supervisor import Supervisor
from edged.systemd import Notifier
from edged.uplink import Uplink

log = logging.getLogger(__name__)

STOP_SECONDS = 5.0
"""The longest stopping the replaced runners may take (as a shutdown step)."""
COMMAND_GRACE = 1.0
"""Seconds beyond ``commands.timeout`` that running commands get before their runner goes."""


def build_runners(config: Config, name: str, context: AdapterContext) -> list[Adapter]:
    """The runners of adapter type ``name`` for all of ``config``'s devices of that type.

    Imports the adapter's runtime module; raises whatever it raises when it cannot load.
    """
    specs = [device.spec() for device in config.devices if device.adapter == name]
    factory = registry.adapter_factory(name)
    return list(factory(specs, config.adapter_settings.get(name), context))


def apply_log_level(level: str) -> None:
    """Set the root logger's level (and bleak's floor, as at start)."""
    root = logging.getLogger()
    root.setLevel(level.upper())
    logging.getLogger("bleak").setLevel(max(root.level, logging.WARNING))


class Reloadable(Protocol):
    """The running daemon's parts a reload changes (the app's Gateway)."""

    config: Config
    context: AdapterContext
    unavailable: dict[str, str]
    notifier: Notifier
    health: HealthReport
    bridge: Bridge
    supervisor: Supervisor
    router: Router
    uplink: Uplink
    registrar: Registrar
    dm: DMAgent | None

    def status_changed(self) -> None:
        """The status settings changed: publish now, then at the new interval."""


class Reloader:
    """Runs reloads of ``gateway`` one at a time (see the module docstring)."""

    def __init__(self, gateway: Reloadable, load: Callable[[str], Config] = load_config) -> None:
        self.gateway = gateway
        self._load = load
        self._next: list[asyncio.Future[dict[str, Any]]] = []
        self._task: asyncio.Task[None] | None = None
        self.reloads = 0

    def request(self) -> asyncio.Future[dict[str, Any]]:
        """Ask for a reload (SIGHUP); the future gets its outcome (see :meth:`reload`)."""
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._next.append(future)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="reload")
        return future

    async def reload(self) -> dict[str, Any]:
        """Reload and return the outcome: ``applied``, ``problems`` (file:line each),
        ``summary`` and ``restart`` (settings that need one). For the control socket."""
        return await asyncio.shield(self.request())

    async def close(self) -> None:
        """Cancel a reload in progress (shutdown)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task], timeout=STOP_SECONDS)
        for future in self._next:
            future.cancel()

    async def _run(self) -> None:
        while self._next:
            waiting, self._next = self._next, []
            outcome = await self._reload_once()
            for future in waiting:
                if not future.done():
                    future.set_result(outcome)

    async def _reload_once(self) -> dict[str, Any]:
        gateway = self.gateway
        path = gateway.config.path
        gateway.notifier.reloading()
        self.reloads += 1
        log.info("reloading %s", path)
        try:
            outcome = await self._apply(path)
        except Exception as exc:  # a bug: the daemon runs on with what it has
            log.exception("reload failed; running on with the configuration as it was")
            outcome = {"applied": False, "problems": [f"reload failed: {exc!r}"]}
        status = gateway.health.summary_line()
        if not outcome["applied"]:
            status = f"reload refused; {status}"
        gateway.notifier.notify("READY=1", f"STATUS={status}")
        return outcome

    async def _apply(self, path: str) -> dict[str, Any]:
        gateway = self.gateway
        try:
            # A blocking edge: a few small regular files (config, token, CA), as at start.
            new = self._load(path)
        except ConfigError as exc:
            for problem in exc.problems:
                log.error("reload: %s", problem)
            log.error(
                "reload refused: %s has %d problem(s); the running configuration is kept",
                path,
                len(exc.problems),
            )
            return {"applied": False, "problems": list(exc.problems)}
        for warning in new.warnings:
            log.warning("config: %s", warning)
        old = gateway.config
        diff = diff_configs(old, new)
        if diff.devices_changed:
            await self._apply_devices(old, new, diff)
        self._apply_management(new, diff)
        self._apply_settings(old, new)
        gateway.config = effective_config(old, new)
        for name in diff.restart:
            log.warning("reload: needs a restart: %s (the running value is kept)", name)
        log.info("reloaded %s: %s", path, diff.summary())
        return {
            "applied": True,
            "problems": [],
            "summary": diff.summary(),
            "restart": list(diff.restart),
        }

    # -- devices -------------------------------------------------------------------------------

    async def _apply_devices(self, old: Config, new: Config, diff: ConfigDiff) -> None:
        gateway = self.gateway
        bridge = gateway.bridge
        old_type = {device.identity: device.adapter for device in old.devices}
        new_type = {device.identity: device.adapter for device in new.devices}
        touched = diff.added | diff.removed | diff.changed
        types = {old_type[d] for d in touched if d in old_type}
        types |= {new_type[d] for d in touched if d in new_type} | diff.adapters
        stop: list[Adapter] = []
        start: list[Adapter] = []
        down: dict[DeviceIdentity, str] = {}
        for name in sorted(types):
            running = _runners_of(bridge.owners, [d for d, t in old_type.items() if t == name])
            built: list[Adapter] = []
            if name in new.adapters_in_use:
                try:
                    built = build_runners(new, name, gateway.context)
                    gateway.unavailable.pop(name, None)
                except Exception as exc:  # noqa: BLE001 - as at start: its devices go down
                    reason = f"adapter {name} unavailable: {exc}"
                    log.error("reload: %s; its devices are marked down", reason)
                    gateway.unavailable[name] = reason
                    down.update({d: reason for d, t in new_type.items() if t == name})
            else:
                gateway.unavailable.pop(name, None)
            settings_changed = name in diff.adapters
            keep, fresh = _match(running, built, touched, settings_changed)
            stop.extend(r for r in running if r not in keep)
            start.extend(fresh)
        moving = {d for r in stop for d in r.devices} | {d for r in start for d in r.devices}
        timeout = new.commands.timeout + COMMAND_GRACE
        async with bridge.holding(moving | touched, timeout):
            stuck = await gateway.supervisor.stop(stop, STOP_SECONDS)
            for name in stuck:
                log.error("reload: %s did not stop within %g s; going on", name, STOP_SECONDS)
            bridge.detach({d for r in stop for d in r.devices}, forget=False)
            bridge.detach(diff.removed, forget=True)
            bridge.attach(start)
            for device, reason in down.items():
                bridge.set_state(device, DeviceState.DOWN, reason)
            # As at start, a device its adapter did not take (logged by the adapter) has no
            # state of its own.
            bridge.detach(
                {d for d in moving | touched if d not in bridge.owners | down}, forget=True
            )
            gateway.supervisor.start(start)
        identities = [device.identity for device in new.devices]
        gateway.router.set_devices(identities)
        gateway.uplink.set_subscriptions(gateway.router.subscriptions())
        gateway.registrar.set_devices(identities)
        if stop or start:
            log.info("reload: %d adapter runner(s) stopped, %d started", len(stop), len(start))

    def _apply_management(self, new: Config, diff: ConfigDiff) -> None:
        dm = self.gateway.dm
        managed = {d.identity: d.manage for d in new.devices if d.manage is not None}
        if dm is not None:
            if diff.manage_changed:
                dm.reconfigure(managed)
        elif managed:
            log.warning(
                "reload: needs a restart: device management (off in the running daemon) for %d "
                "device(s)",
                len(managed),
            )

    def _apply_settings(self, old: Config, new: Config) -> None:
        gateway = self.gateway
        if new.logging.level != old.logging.level:
            apply_log_level(new.logging.level)
        gateway.bridge.qos = new.platform.qos
        desk = gateway.bridge.commands
        desk.timeout = new.commands.timeout
        desk.result_event = new.commands.result_event
        if new.status != old.status:
            gateway.status_changed()


def _runners_of(
    owners: dict[DeviceIdentity, Adapter], devices: Iterable[DeviceIdentity]
) -> list[Adapter]:
    """The distinct runners owning ``devices`` (in first-seen order)."""
    found: dict[int, Adapter] = {}
    for device in devices:
        runner = owners.get(device)
        if runner is not None:
            found.setdefault(id(runner), runner)
    return list(found.values())


def _match(
    running: list[Adapter],
    built: list[Adapter],
    touched: frozenset[DeviceIdentity],
    settings_changed: bool,
) -> tuple[list[Adapter], list[Adapter]]:
    """Which running runners stay (same devices, none of them touched, same adapter settings)
    and which newly built ones start; built runners matching a kept one are dropped unused."""
    if settings_changed:
        return [], built
    keep: list[Adapter] = []
    fresh: list[Adapter] = []
    by_devices = {frozenset(r.devices): r for r in running}
    for runner in built:
        devices = frozenset(runner.devices)
        same = by_devices.get(devices)
        if same is not None and not devices & touched:
            keep.append(same)
        else:
            fresh.append(runner)
    return keep, fresh
