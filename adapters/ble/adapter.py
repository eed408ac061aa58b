"""The BLE runner: one per Bluetooth controller, owning its scanner, devices and GATT links.

Data path: bleak's advert callback -> :meth:`BleController._on_advert` (match, decode, gate; all
synchronous and cheap) -> latest reading per device in ``_pending`` -> the publisher task awaits
``sink.emit``. Adverts are lossy by nature, so when the uplink applies backpressure a newer
reading of a device replaces its unsent older one instead of queueing without bound.

A housekeeping task ticks a few times a second: it releases readings held by ``min_interval``,
marks devices offline when not heard within their ``timeout``, and runs the self-healing ladder
(:mod:`.healer`) when the controller looks wedged.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from edged.adapters.base import Adapter, AdapterContext, DeviceSpec, ReadingSink
from edged.adapters.ble.advert import Advert, DecodeError
from edged.adapters.ble.config import ControllerSettings, DeviceConfig, Settings
from edged.adapters.ble.errors import (
    BleUnavailableError,
    ControllerWedgedError,
    classify,
    describe,
)
from edged.adapters.ble.gatt import GattLink
from edged.adapters.ble.healer import Action, Healer
from edged.adapters.ble.matcher import Matcher
from edged.adapters.ble.power import power_cycle
from edged.adapters.ble.scanner import Scanner
from edged.adapters.ble.tracked import Tracked
from edged.errors import AdapterError, CommandUnsupported
from edged.model import Command, DeviceIdentity, DeviceState, JSONValue, Reading

log = logging.getLogger("edged.adapters.ble")

MAX_TICK = 1.0
MIN_TICK = 0.02


class BleController(Adapter):
    """Every configured BLE device on one Bluetooth controller (``hci0``, ...)."""

    def __init__(
        self,
        controller: str,
        devices: Sequence[DeviceSpec[DeviceConfig]],
        settings: ControllerSettings,
    ) -> None:
        super().__init__(f"ble:{controller}", [spec.identity for spec in devices])
        self.controller = controller
        self.settings = settings
        self.targets = [Tracked(spec) for spec in devices]
        self._by_identity = {target.identity: target for target in self.targets}
        self._matcher = Matcher((target.config, target) for target in self.targets)
        self.slots = asyncio.Semaphore(settings.max_connections)
        for target in self.targets:
            if target.config.gatt is not None:
                target.link = GattLink(target, target.config.gatt, self)
        self.healer = Healer(recovery_wait=settings.recovery_wait, power_cycle=settings.power_cycle)
        self.scanner = Scanner(controller, self._on_advert)
        self._sink: ReadingSink | None = None
        self._pending: dict[DeviceIdentity, Reading] = {}
        self._wakeup = asyncio.Event()
        self._scan_error: str | None = None
        self._connect_streak = 0
        self._quiet = False
        self._started = 0.0
        self.unknown_adverts = 0
        self._tick = self._tick_interval()

    def _tick_interval(self) -> float:
        shortest = [self.settings.silence_timeout, self.settings.recovery_wait]
        for target in self.targets:
            shortest.append(target.config.timeout)
            if target.config.min_interval > 0:
                shortest.append(target.config.min_interval)
        return max(MIN_TICK, min(MAX_TICK, min(shortest) / 4))

    # -- lifecycle --------------------------------------------------------------------------

    async def run(self, sink: ReadingSink) -> None:
        """Scan (and connect) until cancelled; raises when the controller is missing or wedged."""
        self._sink = sink
        self._started = time.monotonic()
        self._scan_error = None
        self._connect_streak = 0
        self._quiet = self.healer.restart()  # after an escalation, retried steps log at DEBUG
        for target in self.targets:
            target.state = None
            self.set_state(target, DeviceState.STARTING, "waiting for the first advert")
        try:
            await self._start_scanner(first=True)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._publish(sink), name=f"{self.name}:publish")
                group.create_task(self._housekeeping(), name=f"{self.name}:housekeeping")
                for target in self.targets:
                    if target.link is not None:
                        group.create_task(target.link.run(), name=f"{self.name}:{target.identity}")
        except* AdapterError as group:
            raise group.exceptions[0] from None
        finally:
            await self.scanner.stop()

    async def _start_scanner(self, *, first: bool = False) -> None:
        try:
            if first:
                await self.scanner.start()
            else:
                await self.scanner.restart()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = classify(exc, self.controller)
            if isinstance(error, BleUnavailableError):
                raise error from exc
            # the first failure is news; retries inside the healing ladder go to DEBUG
            self._note(logging.WARNING if self._scan_error is None else logging.DEBUG, "%s", error)
            self._scan_error = str(error)
        else:
            self._scan_error = None

    # -- adverts ----------------------------------------------------------------------------

    def _on_advert(self, advert: Advert, ble_device: Any) -> None:
        target = self._matcher.match(
            advert.address, advert.name, itertools.chain(advert.service_uuids, advert.service_data)
        )
        if target is None:
            self.unknown_adverts += 1
            return
        target.last_seen = advert.time
        target.rssi = advert.rssi
        target.ble_device = ble_device
        if target.link is not None:
            target.link.heard()
        try:
            decoded = target.decoder.decode(advert)
        except DecodeError as exc:
            target.problems.fail(f"advert {exc.source}", f"cannot decode the advert: {exc}")
            if target.link is None:
                self.set_state(
                    target, DeviceState.OFFLINE, f"heard, but its advert cannot be decoded: {exc}"
                )
            return
        if target.link is None:
            self.set_state(target, DeviceState.ONLINE)
        if decoded is not None:
            for kind in [kind for kind in target.problems.failing if kind.startswith("advert ")]:
                target.problems.ok(kind)
            target.values.update(decoded.values)
        elif target.decoder.has_sources or target.link is not None:
            return  # nothing new: another frame type, or a GATT device's plain advert
        self._offer(target, advert.time, force=decoded is not None and decoded.event)

    def publish(self, target: Tracked, values: Mapping[str, JSONValue], now: float) -> None:
        """Values read over GATT: merge and offer (see :class:`~.gatt.LinkOwner`)."""
        target.values.update(values)
        self._offer(target, now)

    def _offer(self, target: Tracked, now: float, *, force: bool = False) -> None:
        snapshot = target.snapshot()
        if not snapshot:
            return  # a presence-only device without rssi: its state says it all
        values = target.gate.offer(snapshot, now, force=force)
        if values is not None:
            self._queue(target, values)

    def _queue(self, target: Tracked, values: Mapping[str, JSONValue]) -> None:
        self._pending[target.identity] = Reading(
            target.identity, target.spec.event, values, time.time()
        )
        self._wakeup.set()

    async def _publish(self, sink: ReadingSink) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                identity = next(iter(self._pending))
                reading = self._pending.pop(identity)
                await sink.emit(reading)

    # -- device state -----------------------------------------------------------------------

    def set_state(self, target: Tracked, state: DeviceState, detail: str = "") -> None:
        """Tell the sink about a change of ``target``'s state or detail (never a repeat)."""
        if target.state == (state, detail):
            return
        target.state = (state, detail)
        if self._sink is not None:
            self._sink.set_state(target.identity, state, detail)

    def connect_result(self, ok: bool) -> None:
        """A GATT link's connection attempt ended (see :class:`~.gatt.LinkOwner`)."""
        self._connect_streak = 0 if ok else self._connect_streak + 1

    # -- housekeeping and self-healing ------------------------------------------------------

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(self._tick)
            now = time.monotonic()
            for target in self.targets:
                held = target.gate.due(now)
                if held is not None:
                    self._queue(target, held)
                if target.link is None:
                    self._check_presence(target, now)
            action = self.healer.assess(self._symptom(now), now)
            if action is not None:
                await self._heal(action)

    def _check_presence(self, target: Tracked, now: float) -> None:
        timeout = target.config.timeout
        if target.last_seen is None:
            if now - self._started > timeout:
                self.set_state(
                    target, DeviceState.OFFLINE, f"not heard since start ({timeout:g} s)"
                )
        elif now - target.last_seen > timeout:
            rssi = f", last RSSI {target.rssi} dBm" if target.rssi is not None else ""
            self.set_state(target, DeviceState.OFFLINE, f"not heard for {timeout:g} s{rssi}")

    def _symptom(self, now: float) -> str | None:
        if self._scan_error is not None:
            return self._scan_error
        silent = now - max(self.scanner.last_advert, self._started)
        expecting = any(target.link is None or not target.link.connected for target in self.targets)
        if expecting and silent > self.settings.silence_timeout:
            return f"no adverts at all for {silent:.1f} s"
        if self._connect_streak >= self.settings.connect_failures:
            return f"{self._connect_streak} connection attempts in a row failed"
        return None

    async def _heal(self, action: Action) -> None:
        symptom = self.healer.symptom
        if action is Action.RECOVERED:
            steps = ", ".join(step.value for step in self.healer.tried)
            log.info(
                "%s: Bluetooth controller %s recovered (after: %s)",
                self.name,
                self.controller,
                steps,
            )
            self._quiet = False
            return
        if action is Action.ESCALATE:
            steps = " and ".join(step.value for step in self.healer.tried[:-1])
            raise ControllerWedgedError(
                f"Bluetooth controller {self.controller} is still wedged after trying to"
                f" {steps}: {symptom}"
            )
        self._note(
            logging.WARNING,
            "controller %s looks wedged (%s): trying to %s",
            self.controller,
            symptom,
            action.value,
        )
        if action is Action.POWER_CYCLE:
            try:
                await power_cycle(self.controller)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - escalation follows if this did not help
                self._note(
                    logging.WARNING, "power-cycling %s failed: %s", self.controller, describe(exc)
                )
        await self._start_scanner()

    def _note(self, level: int, message: str, *args: Any) -> None:
        """Log a healing step: at ``level`` normally, at DEBUG while retrying after escalation."""
        log.log(logging.DEBUG if self._quiet else level, "%s: " + message, self.name, *args)

    # -- commands ---------------------------------------------------------------------------

    async def execute(self, command: Command) -> Mapping[str, JSONValue] | None:
        """Write commands of GATT devices; advert-only devices accept none."""
        target = self._by_identity.get(command.device)
        if target is None or target.link is None:
            raise CommandUnsupported(f"{command.device} has no GATT commands (it is advert-only)")
        return await target.link.write(command)


def create_adapters(
    devices: Sequence[DeviceSpec[DeviceConfig]], settings: Settings, context: AdapterContext
) -> list[Adapter]:
    """One runner per Bluetooth controller, shared by every device configured on it."""
    by_controller: dict[str, list[DeviceSpec[DeviceConfig]]] = {}
    for spec in devices:
        by_controller.setdefault(spec.section.adapter, []).append(spec)
    return [
        BleController(controller, specs, settings.for_controller(controller))
        for controller, specs in by_controller.items()
    ]
