"""The gateway daemon: builds everything from the config, runs it on one loop, shuts down in order.

Start order: adapters are built (their libraries imported only when a device needs them), the
bridge, the uplink with its subscription set, then all tasks start and the service manager hears
READY=1 — without waiting for the broker, so devices keep running and readings queue up while
it is unreachable. The forwarder and the status loop are restarted if they ever fail (a bug);
the uplink failing ends the daemon with an error so that systemd restarts it.

Shutdown (SIGTERM/SIGINT) is two-phase and every step is bounded: adapters stop first (at most
:data:`STOP_STEP_SECONDS`), commands still running are answered as cancelled, queued messages
are handed to the uplink and in-flight QoS 1 messages acknowledged within
:data:`SHUTDOWN_DRAIN_SECONDS`, then the MQTT session disconnects cleanly. A task that ignores
cancellation is reported in :attr:`Gateway.stuck_tasks` instead of hanging the shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from edged import __version__, codec, topics
from edged.adapters.base import Adapter, AdapterContext
from edged.bridge import Bridge
from edged.config import Config
from edged.control import ControlServer, default_socket_path
from edged.dm.agent import DMAgent
from edged.forwarder import Forwarder
from edged.health import HealthReport
from edged.liveness import ForwardView, Liveness, UplinkView
from edged.logsetup import RECENT
from edged.model import Command, DeviceIdentity, DeviceState, JSONValue, OutgoingMessage
from edged.outbox import PRIORITY_LANE, DiskThread, Outbox, OutboxStore
from edged.registrar import Registrar
from edged.reload import Reloader, build_runners
from edged.router import Router
from edged.statefile import StateFile, sibling_path
from edged.supervisor import Supervisor, keep_running
from edged.systemd import Notifier
from edged.text import safe
from edged.uplink import Uplink, UplinkSettings

log = logging.getLogger(__name__)

EXIT_RESTART = 75
"""Exit status asking systemd to start the daemon again (EX_TEMPFAIL; Restart=on-failure)."""
MAX_OPERATOR_DEVICES = 5000
LIVENESS_SLACK = 120.0
"""Seconds a part may stand still beyond its own timeouts before it counts as wedged."""
SHUTDOWN_DRAIN_SECONDS = 5.0
STOP_STEP_SECONDS = 5.0
"""The longest any one shutdown step may take before it is given up on and reported."""


class Gateway:
    """One running daemon."""

    def __init__(self, config: Config, notifier: Notifier | None = None) -> None:
        self.config = config
        self.notifier = notifier or Notifier()
        self.context = AdapterContext(gateway=config.gateway)
        self.adapters: list[Adapter] = []
        self.unavailable: dict[str, str] = {}
        """Adapter types that could not be loaded, with the reason (their devices are down)."""
        self._build_adapters()
        storage = config.storage
        registration = config.registration
        self.registrar = Registrar(
            config.gateway,
            [device.identity for device in config.devices],
            registration,
            StateFile(registration.path or sibling_path(storage.resolved_path, "registered.json")),
            wake=lambda: self.outbox.wake(),  # noqa: PLW0108 - the outbox is built next
        )
        self.outbox = Outbox(
            DiskThread(
                OutboxStore(storage.resolved_path, synchronous=storage.synchronous.upper()),
                commit_interval=storage.commit_interval,
                commit_batch=storage.commit_batch,
            ),
            max_bytes=storage.max_bytes,
            memory_bytes=storage.memory_bytes,
            max_age=storage.max_age,
            qos0_on_disk=storage.qos0_on_disk,
            is_held=self.registrar.is_held,
        )
        self.bridge = Bridge(
            config.gateway,
            self.adapters,
            self.outbox,
            qos=config.platform.qos,
            command_timeout=config.commands.timeout,
            result_event=config.commands.result_event,
            alarm_events=storage.alarm_events,
        )
        for device in config.devices:
            if device.adapter in self.unavailable:
                self.bridge.set_state(
                    device.identity, DeviceState.DOWN, self.unavailable[device.adapter]
                )
        self.bridge.gateway_commands.update(self._gateway_commands())
        self.forwarder = Forwarder(self.outbox, self.bridge.counters, gate=self.registrar)
        self.supervisor = Supervisor(self.adapters, self.bridge)
        self.adapters = self.supervisor.adapters  # one list: a reload starts and stops runners
        client_id = topics.gateway_client_id(config.platform.org, config.gateway)
        self.dm = self._build_dm_agent()
        self.router = Router(
            config.gateway,
            self.bridge.owners.keys() | {device.identity for device in config.devices},
            commands=self.bridge.handle_command_message,
            refuse_unnamed=self.bridge.commands.refuse_unnamed,
            notify=self.registrar.handle_notify,
            dm=None if self.dm is None else self.dm.handle,
            dm_filters=[] if self.dm is None else self.dm.subscriptions(),
        )
        self.uplink = Uplink(
            UplinkSettings.from_config(config.platform, config.token, client_id), self.router.route
        )
        self.uplink.set_subscriptions(self.router.subscriptions())
        sections: dict[str, Callable[[], dict[str, Any]]] = {"registration": self.registrar.summary}
        if self.dm is not None:
            self.uplink.add_connect_listener(self.dm.connected)
            self.bridge.state_listeners.append(self.dm.device_state_changed)
            sections["dm"] = self.dm.snapshot
        self.health = HealthReport(
            self.bridge,
            self.uplink,
            self.supervisor,
            self.adapters,
            self.registrar.problems,
            self.unavailable,
            sections=sections,
            line_parts=[self._registration_line],
        )
        self.control = ControlServer(
            config.control.socket or default_socket_path(),
            {
                "status": self.operator_status,
                "publish-status": self._publish_status_now,
                "reload": lambda: self.reloader.reload(),  # noqa: PLW0108 - built next
            },
        )
        self.reloader = Reloader(self)
        platform = config.platform
        self.liveness = Liveness(
            UplinkView(lambda: self.uplink.connected, self._uplink_progress),
            ForwardView(lambda: self.outbox.depth, self._anyone_held, self._forward_progress),
            uplink_limit=platform.connect_timeout + platform.reconnect.max + LIVENESS_SLACK,
            forward_limit=max(LIVENESS_SLACK, 2 * platform.keepalive),
        )
        self.restart_requested = False
        self.stuck_tasks: list[str] = []
        """Tasks that did not stop within :data:`STOP_STEP_SECONDS` of being cancelled."""
        self._fatal: BaseException | None = None
        self._stop = asyncio.Event()
        self._status_wake = asyncio.Event()

    def _build_adapters(self) -> None:
        for name in self.config.adapters_in_use:
            try:
                self.adapters.extend(build_runners(self.config, name, self.context))
            except Exception as exc:  # noqa: BLE001 - one broken adapter must not stop the others
                reason = f"adapter {name} unavailable: {exc}"
                log.error("%s; its device(s) are marked down", reason)
                self.unavailable[name] = reason

    def _build_dm_agent(self) -> DMAgent | None:
        config = self.config
        managed = {d.identity: d.manage for d in config.devices if d.manage is not None}
        if not config.managed.enabled and not managed:
            return None
        return DMAgent(
            config.gateway,
            config.managed,
            managed,
            send=self._send_dm,
            execute=self.bridge.execute,
            state_file=StateFile(
                config.managed.path or sibling_path(config.storage.resolved_path, "dm.json")
            ),
            version=__version__,
            location=self.context.location,
            restart=self.request_restart,
        )

    def _send_dm(self, device: DeviceIdentity, topic: str, payload: bytes) -> None:
        self.outbox.put(PRIORITY_LANE, str(device), OutgoingMessage(topic, payload, 1))

    def _gateway_commands(self) -> dict[str, Callable[[Command], Mapping[str, JSONValue] | None]]:
        return {
            "ping": lambda command: {"pong": True},
            "status": lambda command: self.status(),
        }

    # -- status --------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The gateway's health, as published in its status event."""
        return self.health.build()

    def _registration_line(self) -> str:
        counts = self.registrar.counts()
        waiting = counts["pending"] + counts["waiting"]
        held = counts["failed"] + counts["permanent"]
        return f"{counts['registered']} registered, {waiting} registering, {held} refused"

    # -- liveness (the watchdog) ---------------------------------------------------------------

    def _alive(self) -> bool:
        return not self.liveness.wedged()

    def _uplink_progress(self) -> tuple[str, int]:
        stats = self.uplink.stats
        return stats.state, stats.attempts

    def _anyone_held(self) -> bool:
        counts = self.registrar.counts()
        return any(counts[state] for state in ("waiting", "pending", "failed", "permanent"))

    def _forward_progress(self) -> tuple[int, ...]:
        counters = self.outbox.counters
        return (
            self.bridge.counters["forwarded"],
            counters["delivered"],
            counters["resent"],
            counters["rejected"],
            self.outbox.depth,
        )

    def operator_status(self) -> dict[str, Any]:
        """What ``edged status`` shows: the status event plus per-device detail and recent
        problems (not bounded by the platform's payload limit; at most 5,000 devices)."""
        registration = {
            entry["device"]: entry for entry in self.registrar.device_states(MAX_OPERATOR_DEVICES)
        }
        devices = []
        for device, status in list(self.bridge.states.items())[:MAX_OPERATOR_DEVICES]:
            entry = registration.get(str(device), {})
            devices.append(
                {
                    "device": str(device),
                    "state": status.state.value,
                    "detail": safe(status.detail),
                    "since": status.since,
                    "registration": entry.get("state"),
                    "retryIn": entry.get("retry_in"),
                }
            )
        return {
            "gateway": str(self.config.gateway),
            "version": __version__,
            "pid": os.getpid(),
            "config": self.config.path,
            "summary": self.health.summary_line(),
            "report": self.status(),
            "deviceDetail": devices,
            "recentProblems": list(RECENT.records),
        }

    def _publish_status_now(self) -> dict[str, Any]:
        self._publish_status()
        return {"published": True}

    def _publish_status(self) -> None:
        body = codec.encode_event(self.status(), time.time())
        self.bridge.publish_event(self.config.gateway, self.config.status.event, body, 1)
        self.notifier.notify(f"STATUS={self.health.summary_line()}")

    def status_changed(self) -> None:
        """The ``status:`` settings changed (a reload): publish now and go on at the new
        interval."""
        self._status_wake.set()

    async def _status_loop(self) -> None:
        while True:
            self._publish_status()
            self._status_wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.status.interval):
                    await self._status_wake.wait()

    # -- lifecycle -----------------------------------------------------------------------------

    def request_stop(self) -> None:
        """Begin an orderly shutdown (signal handlers call this)."""
        self._stop.set()

    def request_restart(self) -> None:
        """Shut down in order and exit with :data:`EXIT_RESTART`, so that systemd starts the
        daemon again (after a package upgrade of edged itself)."""
        log.warning("restarting: shutting down; systemd starts edged again")
        self.restart_requested = True
        self._stop.set()

    async def run(self) -> None:
        """Run until :meth:`request_stop` (or SIGTERM/SIGINT), then shut down in order.

        Raises the uplink's error if the MQTT session failed unexpectedly (after shutting down).
        """
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self._reload_signal)
        try:
            await self._run_until_stopped()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            self.notifier.close()
        if self._fatal is not None:
            raise self._fatal
        counters = self.bridge.counters
        log.info(
            "edged stopped: %d readings taken, %d messages handed to the broker, %d left in the "
            "outbox (sent at the next start)",
            counters["readings"],
            counters["forwarded"],
            self.outbox.depth,
        )

    async def _run_until_stopped(self) -> None:
        loop = asyncio.get_running_loop()
        await self.outbox.start()  # opens the database (blocks briefly, before READY=1)
        self.registrar.load()  # reads registered.json (blocks briefly, before READY=1)
        if self.config.control.enabled:
            await self.control.start()
        if self.dm is not None:
            self.dm.load()  # reads dm.json (blocks briefly, before READY=1)
        uplink = loop.create_task(self.uplink.run(), name="uplink")
        uplink.add_done_callback(self._uplink_ended)
        forwarder = loop.create_task(
            keep_running("forwarder", lambda: self.forwarder.run(self.uplink)), name="forwarder"
        )
        adapters = loop.create_task(self.supervisor.run(), name="supervisor")
        background = [
            loop.create_task(keep_running("status loop", self._status_loop), name="status"),
            loop.create_task(self.notifier.watchdog(self._alive), name="watchdog"),
        ]
        if self.dm is not None:
            dm = self.dm
            background.append(
                loop.create_task(keep_running("device management", dm.run), name="dm")
            )
        try:
            self.notifier.notify(
                "READY=1", f"STATUS=started with {len(self.bridge.states)} devices"
            )
            log.info(
                "edged started: gateway %s, %d devices, broker %s:%d",
                self.config.gateway,
                len(self.bridge.states),
                self.config.platform.resolved_host,
                self.config.platform.resolved_port,
            )
            await self._stop.wait()
            self.notifier.notify("STOPPING=1", "STATUS=stopping")
            await self.reloader.close()
            log.info(
                "stopping: adapters first, then sending what the outbox holds (%d messages) "
                "for up to %g s",
                self.outbox.depth,
                SHUTDOWN_DRAIN_SECONDS,
            )
            await self._stop_tasks([adapters])
            await self._bounded("answering commands in progress", self.bridge.cancel_commands())
            if self.dm is not None:
                await self._bounded("answering DM requests in progress", self.dm.close())
            await self._drain(SHUTDOWN_DRAIN_SECONDS)
        finally:
            await self._stop_tasks([forwarder, *background])
            if not uplink.done():
                await self._bounded(
                    "closing the MQTT session", self.uplink.close(timeout=SHUTDOWN_DRAIN_SECONDS)
                )
            await self._stop_tasks([uplink, adapters])
            self.registrar.close()  # unconfirmed probes stay in the outbox for the next start
            await self._bounded("saving registrations", self.registrar.state_file.flush())
            await self._bounded("closing the control socket", self.control.close())
            await self._bounded("closing the outbox", self.outbox.close())

    def _reload_signal(self) -> None:
        if not self._stop.is_set():
            self.reloader.request()  # the outcome is logged

    def _uplink_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None and not self._stop.is_set():
            self._fatal = task.exception()
            log.error("the MQTT session failed unexpectedly: %r; stopping", self._fatal)
            self.request_stop()

    async def _stop_tasks(self, tasks: list[asyncio.Task[None]]) -> None:
        """Cancel ``tasks`` and wait at most :data:`STOP_STEP_SECONDS` for them to end."""
        pending = [task for task in tasks if not task.done()]
        for task in pending:
            task.cancel()
        if not pending:
            return
        _, stuck = await asyncio.wait(pending, timeout=STOP_STEP_SECONDS)
        for task in stuck:
            if task.get_name() not in self.stuck_tasks:
                self.stuck_tasks.append(task.get_name())
                log.error(
                    "task %s did not stop within %g s of being cancelled; giving up on it",
                    task.get_name(),
                    STOP_STEP_SECONDS,
                )

    async def _bounded(self, what: str, step: Awaitable[None]) -> None:
        try:
            async with asyncio.timeout(STOP_STEP_SECONDS):
                await step
        except TimeoutError:
            log.error("shutdown: %s took over %g s; going on", what, STOP_STEP_SECONDS)
            self.stuck_tasks.append(what)

    async def _drain(self, seconds: float) -> None:
        """Give the outbox up to ``seconds`` to have everything acknowledged (while connected);
        what is left stays on disk and is sent at the next start."""
        if self.uplink.connected:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self.outbox.wait_empty()
