"""The bridge: readings become events, commands reach their adapter, every command gets a result.

The bridge owns the device table (which adapter runner owns which platform identity) and the
device states. It is the adapters' :class:`~edged.adapters.base.ReadingSink`. Readings become
events in the durable :class:`~edged.outbox.outbox.Outbox` (telemetry lane, or the alarm lane
for configured alarm events), which makes an adapter wait only while the disk is far behind
(never for an uplink outage); the forwarder takes them from there, hands them to the uplink
and tells the outbox of each delivery. Command messages go to
the :class:`~edged.commands.CommandDesk`, which runs them through :meth:`Bridge.execute` and
puts each one's result into the outbox's priority lane.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass

from edged import codec, topics
from edged.adapters.base import Adapter
from edged.commands import CommandDesk
from edged.errors import CommandFailed, CommandUnsupported
from edged.forwarder import Forwarder, Publisher
from edged.logsetup import device_extra
from edged.model import (
    Command,
    DeviceIdentity,
    DeviceState,
    JSONValue,
    OutgoingMessage,
    Reading,
)
from edged.outbox import ALARM_LANE, BULK_LANE, PRIORITY_LANE, Outbox
from edged.problems import ProblemLog
from edged.text import safe

log = logging.getLogger(__name__)

TOPIC_CACHE_SIZE = 4096


@dataclass
class DeviceStatus:
    """A device's link state as last reported."""

    state: DeviceState
    detail: str
    since: float


GatewayCommandHandler = Callable[[Command], Mapping[str, JSONValue] | None]


class Bridge:
    """Routes readings out and commands in. Implements ``ReadingSink``."""

    def __init__(
        self,
        gateway: DeviceIdentity,
        adapters: list[Adapter],
        outbox: Outbox,
        *,
        qos: int = 1,
        command_timeout: float = 10.0,
        result_event: str = "cmdResult",
        alarm_events: Iterable[str] = (),
    ) -> None:
        self.gateway = gateway
        self.qos = qos
        self.outbox = outbox
        self.alarm_events = frozenset(alarm_events)
        self.commands = CommandDesk(
            self.execute, self._put_result, result_event=result_event, timeout=command_timeout
        )
        self.owners: dict[DeviceIdentity, Adapter] = {}
        for adapter in adapters:
            for device in adapter.devices:
                self.owners[device] = adapter
        now = time.time()
        self.states: dict[DeviceIdentity, DeviceStatus] = {
            device: DeviceStatus(DeviceState.STARTING, "", now) for device in self.owners
        }
        self.gateway_commands: dict[str, GatewayCommandHandler] = {}
        self.state_listeners: list[Callable[[DeviceIdentity, DeviceState, str], None]] = []
        """Told of every state transition (the device-management agent's diagnostics)."""
        self.counters: Counter[str] = Counter()
        self._device_locks: dict[DeviceIdentity, asyncio.Lock] = {}
        self._oversize_logged: set[DeviceIdentity] = set()  # bounded: configured devices only
        self._topics: dict[tuple[DeviceIdentity, str], str] = {}
        self._problems = ProblemLog(log, "bridge", quiet=60.0)

    # -- ReadingSink ---------------------------------------------------------------------------

    async def emit(self, reading: Reading) -> None:
        """Encode ``reading`` as an event and put it in the outbox.

        Waits only while the disk is thousands of commits behind (a producer faster than the
        disk, never an outage of the uplink).

        A reading that cannot be encoded (values from a device nested deeper than the encoder
        writes, or not JSON at all) is dropped, counted and logged once per device.
        """
        try:
            payload = codec.encode_event(reading.values, reading.timestamp)
        except (TypeError, ValueError) as exc:  # orjson.JSONEncodeError is a TypeError
            self.counters["readings_unencodable"] += 1
            self._problems.fail(
                f"encode:{reading.device}",
                f"dropped a reading of {reading.device} that cannot be encoded as JSON: "
                f"{safe(exc)} (further ones counted as readings_unencodable)",
            )
            return
        topic = self._event_topic(reading.device, reading.event)
        if not self._fits(reading.device, topic, payload):
            return
        lane = ALARM_LANE if reading.event in self.alarm_events else BULK_LANE
        self.outbox.put(lane, str(reading.device), OutgoingMessage(topic, payload, self.qos))
        self.counters["readings"] += 1
        if self.outbox.lagging:  # only a producer faster than the disk ever waits here
            self.counters["disk_waits"] += 1
            await self.outbox.caught_up()

    def _event_topic(self, device: DeviceIdentity, event: str) -> str:
        # One shared string per device and event: a queued reading then holds no topic of its
        # own. Bounded, since adapters may take event names from what a device sends.
        key = (device, event)
        topic = self._topics.get(key)
        if topic is None:
            if len(self._topics) >= TOPIC_CACHE_SIZE:
                self._topics.clear()
            topic = self._topics[key] = topics.event_topic(device, event)
        return topic

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        """Record a device's link state; transitions are logged once."""
        current = self.states.get(device)
        if current is not None and current.state == state:
            current.detail = detail
            return
        self.states[device] = DeviceStatus(state, detail, time.time())
        for listener in self.state_listeners:
            listener(device, state, detail)
        if state in (DeviceState.OFFLINE, DeviceState.DOWN):
            log.warning(
                "device %s is %s%s",
                device,
                state.value,
                f": {safe(detail)}" if detail else "",
                extra=device_extra(device),
            )
        elif current is not None and current.state in (DeviceState.OFFLINE, DeviceState.DOWN):
            log.info("device %s is %s again", device, state.value, extra=device_extra(device))

    # -- outgoing ------------------------------------------------------------------------------

    def _fits(self, device: DeviceIdentity, topic: str, payload: bytes) -> bool:
        if len(payload) <= codec.MAX_PAYLOAD:
            return True
        self.counters["oversize_refused"] += 1
        if device not in self._oversize_logged and device in self.states:
            self._oversize_logged.add(device)
            log.error(
                "refused to publish %d bytes on %s: the platform's limit is %d bytes "
                "(further refusals for %s are counted in the status event)",
                len(payload),
                safe(topic),
                codec.MAX_PAYLOAD,
                device,
                extra=device_extra(device),
            )
        return False

    def publish_event(self, device: DeviceIdentity, event: str, payload: bytes, qos: int) -> bool:
        """Put an encoded event of ``device`` in the outbox; False when refused for size."""
        topic = topics.event_topic(device, event)
        if not self._fits(device, topic, payload):
            return False
        self.outbox.put(BULK_LANE, str(device), OutgoingMessage(topic, payload, qos))
        return True

    def _put_result(self, device: DeviceIdentity, message: OutgoingMessage) -> bool:
        self.outbox.put(PRIORITY_LANE, str(device), message)
        return True

    async def forward(self, publisher: Publisher) -> None:
        """Hand the outbox's messages to ``publisher`` until cancelled, ungated (tests).

        The daemon runs a :class:`~edged.forwarder.Forwarder` with the registrar as its gate.
        """
        await Forwarder(self.outbox, self.counters).run(publisher)

    # -- incoming ------------------------------------------------------------------------------

    def handle_command_message(
        self, topic: topics.CommandTopic | topics.MalformedCommandTopic, payload: bytes
    ) -> None:
        """Start carrying out a command received on ``topic``; the result is published later."""
        self.commands.handle(topic, payload)

    async def execute(self, command: Command) -> Mapping[str, JSONValue] | None:
        """Carry out ``command`` on the gateway or the adapter that owns its device."""
        if command.device == self.gateway:
            handler = self.gateway_commands.get(command.name)
            if handler is None:
                known = ", ".join(sorted(self.gateway_commands)) or "none"
                raise CommandUnsupported(
                    f"unknown gateway command {command.name!r}; known: {known}"
                )
            return handler(command)
        adapter = self.owners.get(command.device)
        if adapter is None:
            status = self.states.get(command.device)
            if status is not None:  # configured, but its adapter could not be loaded
                raise CommandFailed(f"device {command.device} is down: {status.detail}")
            raise CommandUnsupported(f"device {command.device} is not attached to this gateway")
        lock = self._device_locks.setdefault(command.device, asyncio.Lock())
        async with lock:  # one command at a time per device, in arrival order
            # Looked up again: a reload may have given the device a new runner meanwhile.
            adapter = self.owners.get(command.device)
            if adapter is None:
                raise CommandUnsupported(f"device {command.device} is no longer attached")
            return await adapter.execute(command)

    @contextlib.asynccontextmanager
    async def holding(
        self, devices: Iterable[DeviceIdentity], wait_at_most: float
    ) -> AsyncIterator[None]:
        """Hold the command locks of ``devices``: commands running on them finish first (at
        most ``wait_at_most`` s in all, then the block runs anyway), later ones wait until the block
        ends and then go to whichever runner owns their device then (a reload swaps runners).
        """
        held: list[asyncio.Lock] = []
        try:
            async with asyncio.timeout(wait_at_most):
                for device in sorted(devices):
                    lock = self._device_locks.setdefault(device, asyncio.Lock())
                    await lock.acquire()
                    held.append(lock)
        except TimeoutError:
            log.warning(
                "a command still runs after %g s; reconfiguring its device anyway", wait_at_most
            )
        try:
            yield
        finally:
            for lock in held:
                lock.release()

    def attach(self, adapters: Iterable[Adapter]) -> None:
        """Make ``adapters`` the owners of their devices (each device starts afresh)."""
        for adapter in adapters:
            for device in adapter.devices:
                self.owners[device] = adapter
                self.set_state(device, DeviceState.STARTING, "starting")

    def detach(self, devices: Iterable[DeviceIdentity], *, forget: bool) -> None:
        """Take ``devices`` from their runners; with ``forget``, drop them from the device
        table too (removed from the config: their queued messages are still delivered)."""
        for device in devices:
            self.owners.pop(device, None)
            if forget:
                self.states.pop(device, None)
                self._oversize_logged.discard(device)
                lock = self._device_locks.get(device)
                if lock is not None and not lock.locked():
                    del self._device_locks[device]

    async def cancel_commands(self) -> None:
        """Cancel commands still in progress (shutdown); each is answered as cancelled."""
        await self.commands.cancel_all()

    # -- status --------------------------------------------------------------------------------

    def device_counts(self) -> dict[str, int]:
        """How many devices are in each state."""
        counts = Counter(status.state.value for status in self.states.values())
        return {state.value: counts.get(state.value, 0) for state in DeviceState}
