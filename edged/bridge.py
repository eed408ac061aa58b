"""The bridge: readings become events, commands reach their adapter, every command gets a result.

The bridge owns the device table (which adapter runner owns which platform identity) and the
device states. It is the adapters' :class:`~edged.adapters.base.ReadingSink`. Outgoing messages
go into a bounded queue that the forwarder drains into the uplink; a full queue makes
``emit`` wait (backpressure) instead of dropping anything.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from edged import codec, topics
from edged.adapters.base import Adapter
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported, PayloadTooLarge
from edged.model import (
    Command,
    CommandResult,
    CommandStatus,
    DeviceIdentity,
    DeviceState,
    JSONValue,
    Reading,
)

log = logging.getLogger(__name__)

MAX_CONCURRENT_COMMANDS = 256


class OutgoingMessage(NamedTuple):
    """A message waiting for the uplink."""

    topic: str
    payload: bytes
    qos: int


class Publisher(Protocol):
    """The part of the uplink the forwarder needs."""

    async def publish(self, topic: str, payload: bytes, qos: int) -> None:
        """Hand one message to the MQTT session (waits while it cannot take more)."""


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
        *,
        qos: int = 1,
        queue_size: int = 10000,
        command_timeout: float = 10.0,
        result_event: str = "cmdResult",
    ) -> None:
        self.gateway = gateway
        self.qos = qos
        self.command_timeout = command_timeout
        self.result_event = result_event
        self.queue: asyncio.Queue[OutgoingMessage] = asyncio.Queue(maxsize=queue_size)
        self.owners: dict[DeviceIdentity, Adapter] = {}
        for adapter in adapters:
            for device in adapter.devices:
                self.owners[device] = adapter
        now = time.time()
        self.states: dict[DeviceIdentity, DeviceStatus] = {
            device: DeviceStatus(DeviceState.STARTING, "", now) for device in self.owners
        }
        self.gateway_commands: dict[str, GatewayCommandHandler] = {}
        self.counters: Counter[str] = Counter()
        self._command_tasks: set[asyncio.Task[None]] = set()
        self._device_locks: dict[DeviceIdentity, asyncio.Lock] = {}
        self._oversize_logged: set[DeviceIdentity] = set()

    # -- ReadingSink ---------------------------------------------------------------------------

    async def emit(self, reading: Reading) -> None:
        """Encode ``reading`` as an event and queue it (waits while the queue is full)."""
        payload = codec.encode_event(reading.values, reading.timestamp)
        topic = topics.event_topic(reading.device, reading.event)
        if not self._fits(reading.device, topic, payload):
            return
        message = OutgoingMessage(topic, payload, self.qos)
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            self.counters["queue_full_waits"] += 1
            await self.queue.put(message)
        self.counters["readings"] += 1

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        """Record a device's link state; transitions are logged once."""
        current = self.states.get(device)
        if current is not None and current.state == state:
            current.detail = detail
            return
        self.states[device] = DeviceStatus(state, detail, time.time())
        if state in (DeviceState.OFFLINE, DeviceState.DOWN):
            log.warning("device %s is %s%s", device, state.value, f": {detail}" if detail else "")
        elif current is not None and current.state in (DeviceState.OFFLINE, DeviceState.DOWN):
            log.info("device %s is %s again", device, state.value)

    # -- outgoing ------------------------------------------------------------------------------

    def _fits(self, device: DeviceIdentity, topic: str, payload: bytes) -> bool:
        if len(payload) <= codec.MAX_PAYLOAD:
            return True
        self.counters["oversize_refused"] += 1
        if device not in self._oversize_logged:
            self._oversize_logged.add(device)
            log.error(
                "refused to publish %d bytes on %s: the platform's limit is %d bytes "
                "(further refusals for %s are counted in the status event)",
                len(payload),
                topic,
                codec.MAX_PAYLOAD,
                device,
            )
        return False

    async def publish_now(
        self, device: DeviceIdentity, event: str, payload: bytes, qos: int
    ) -> bool:
        """Queue an event body that is already encoded; False when refused for size."""
        topic = topics.event_topic(device, event)
        if not self._fits(device, topic, payload):
            return False
        await self.queue.put(OutgoingMessage(topic, payload, qos))
        return True

    async def forward(self, publisher: Publisher) -> None:
        """Drain the queue into ``publisher`` until cancelled (the forwarder task)."""
        queue = self.queue
        while True:
            message = await queue.get()
            try:
                await publisher.publish(message.topic, message.payload, message.qos)
            except PayloadTooLarge:
                self.counters["oversize_refused"] += 1
            finally:
                queue.task_done()
            self.counters["forwarded"] += 1

    # -- incoming ------------------------------------------------------------------------------

    def handle_command_message(self, topic: topics.CommandTopic, payload: bytes) -> None:
        """Start carrying out a command received on ``topic``; the result is published later."""
        self.counters["commands"] += 1
        data: Any = None
        correlation_id: str | None = None
        problem: str | None = None
        if topic.format == "json":
            try:
                data = codec.decode_json(payload)
            except ValueError:
                problem = "the payload is not valid JSON"
            if isinstance(data, dict):
                raw_id = data.get("reqId", data.get("correlationId"))
                if isinstance(raw_id, str | int) and not isinstance(raw_id, bool):
                    correlation_id = str(raw_id)
        command = Command(topic.device, topic.command, topic.format, payload, data, correlation_id)
        if problem is not None:
            self._finish(CommandResult(command, CommandStatus.REJECTED, problem))
            return
        if len(self._command_tasks) >= MAX_CONCURRENT_COMMANDS:
            self._finish(
                CommandResult(command, CommandStatus.FAILED, "too many commands in progress")
            )
            return
        task = asyncio.get_running_loop().create_task(
            self._run_command(command), name=f"command:{command.device}:{command.name}"
        )
        self._command_tasks.add(task)
        task.add_done_callback(self._command_tasks.discard)

    async def _run_command(self, command: Command) -> None:
        try:
            async with asyncio.timeout(self.command_timeout):
                data = await self._execute(command)
            result = CommandResult(command, CommandStatus.OK, None, data or {})
        except CommandRejected as exc:
            result = CommandResult(command, CommandStatus.REJECTED, str(exc))
        except CommandUnsupported as exc:
            result = CommandResult(command, CommandStatus.UNSUPPORTED, str(exc))
        except CommandFailed as exc:
            result = CommandResult(command, CommandStatus.FAILED, str(exc))
        except TimeoutError:
            result = CommandResult(
                command, CommandStatus.TIMEOUT, f"no outcome within {self.command_timeout:g} s"
            )
        except Exception as exc:
            log.exception("command %s for %s raised unexpectedly", command.name, command.device)
            result = CommandResult(command, CommandStatus.FAILED, f"internal error: {exc}")
        self._finish(result)

    async def _execute(self, command: Command) -> Mapping[str, JSONValue] | None:
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
            return await adapter.execute(command)

    def _finish(self, result: CommandResult) -> None:
        self.counters[f"commands_{result.status.value}"] += 1
        if result.status is not CommandStatus.OK:
            log.info(
                "command %s for %s: %s: %s",
                result.command.name,
                result.command.device,
                result.status.value,
                result.error,
            )
        payload = codec.encode_command_result(result, time.time())
        topic = topics.event_topic(result.command.device, self.result_event)
        if not self._fits(result.command.device, topic, payload):
            return
        message = OutgoingMessage(topic, payload, 1)
        try:
            self.queue.put_nowait(message)
        except asyncio.QueueFull:
            task = asyncio.get_running_loop().create_task(self.queue.put(message))
            self._command_tasks.add(task)
            task.add_done_callback(self._command_tasks.discard)

    async def cancel_commands(self) -> None:
        """Cancel commands still in progress (shutdown)."""
        for task in list(self._command_tasks):
            task.cancel()
        if self._command_tasks:
            await asyncio.gather(*self._command_tasks, return_exceptions=True)

    # -- status --------------------------------------------------------------------------------

    def device_counts(self) -> dict[str, int]:
        """How many devices are in each state."""
        counts = Counter(status.state.value for status in self.states.values())
        return {state.value: counts.get(state.value, 0) for state in DeviceState}
