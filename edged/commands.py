"""Every command gets exactly one result, and a command is carried out at most once.

:class:`CommandDesk` takes each command message the platform delivers, decides whether it can
run, runs it (through the bridge's ``execute``) under a timeout and a concurrency cap, and hands
one small, valid result event to the outbox's priority lane:

* a malformed request (body not JSON, reqId over :data:`MAX_REQ_ID` characters, a command or
  format topic level outside the platform's character set) is answered ``rejected``;
* a result the platform would refuse (over 131072 bytes) or that cannot be encoded (JSON
  nested deeper than the encoder allows) is replaced by a small ``failed`` result saying why;
* a repeat of a reqId already seen for the same device (a QoS 1 redelivery around a broker
  restart) is not carried out again: it is answered with the first result (see
  :class:`RecentRequests` for the window).

Where not even the device can be named the message is refused, counted and logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from edged import codec, topics
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported
from edged.model import (
    Command,
    CommandResult,
    CommandStatus,
    DeviceIdentity,
    JSONValue,
    OutgoingMessage,
)
from edged.requestbook import RequestBook, Seen
from edged.text import safe

log = logging.getLogger(__name__)

MAX_CONCURRENT_COMMANDS = 256
MAX_REQ_ID = 256
"""Characters a reqId may have; a longer one is rejected (the result could not echo it)."""

REMEMBER_SECONDS = 600.0
REMEMBER_ENTRIES = 2048
KEEP_RESULT_BYTES = 1024
"""Results up to this size are kept to answer a repeat verbatim; larger ones by a summary."""

Execute = Callable[[Command], Awaitable[Mapping[str, JSONValue] | None]]
Deliver = Callable[[DeviceIdentity, OutgoingMessage], bool]


class RecentRequests(RequestBook[CommandStatus]):
    """The reqIds seen per device in the last :data:`REMEMBER_SECONDS` seconds (at most
    :data:`REMEMBER_ENTRIES`, each keeping at most :data:`KEEP_RESULT_BYTES` of result)."""

    def __init__(
        self,
        *,
        seconds: float = REMEMBER_SECONDS,
        entries: int = REMEMBER_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            seconds=seconds, entries=entries, keep_bytes=KEEP_RESULT_BYTES, clock=clock
        )


class CommandDesk:
    """Takes command messages, runs them, and delivers exactly one result for each."""

    def __init__(
        self,
        execute: Execute,
        deliver: Deliver,
        *,
        result_event: str = "cmdResult",
        timeout: float = 10.0,
        max_concurrent: int = MAX_CONCURRENT_COMMANDS,
        recent: RecentRequests | None = None,
    ) -> None:
        self._execute = execute
        self._deliver = deliver
        self.result_event = result_event
        self.timeout = timeout
        self.max_concurrent = max_concurrent
        self.recent = recent or RecentRequests()
        self.counters: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._refusals_logged = False

    @property
    def running(self) -> int:
        """Commands being carried out now."""
        return len(self._tasks)

    # -- intake --------------------------------------------------------------------------------

    def handle(
        self, topic: topics.CommandTopic | topics.MalformedCommandTopic, payload: bytes
    ) -> None:
        """Start carrying out a command; its one result is delivered when it ends."""
        self.counters["commands"] += 1
        if isinstance(topic, topics.MalformedCommandTopic):
            command = Command(topic.device, safe(topic.command, 128), safe(topic.format, 128), b"")
            self._finish(
                CommandResult(
                    command,
                    CommandStatus.REJECTED,
                    "the command and format topic levels must be 1-128 of A-Z a-z 0-9 _ . -",
                )
            )
            return
        data, correlation_id, problem = _parse_body(topic.format, payload)
        command = Command(topic.device, topic.command, topic.format, payload, data, correlation_id)
        if problem is not None:
            self._finish(CommandResult(command, CommandStatus.REJECTED, problem))
            return
        if correlation_id is not None:
            earlier = self.recent.check_in(topic.device, correlation_id)
            if earlier is not None:
                self._answer_repeat(command, earlier)
                return
        if len(self._tasks) >= self.max_concurrent:
            self._finish(
                CommandResult(command, CommandStatus.FAILED, "too many commands in progress")
            )
            return
        task = asyncio.get_running_loop().create_task(
            self._run(command), name=f"command:{command.device}:{command.name}"
        )
        self._tasks.add(task)
        self._idle.clear()
        task.add_done_callback(lambda done: self._ended(done, command))

    def refuse_unnamed(self, topic: str) -> None:
        """A command-like message whose device cannot be named: count it, log it once."""
        self.counters["commands_unroutable"] += 1
        level = logging.DEBUG if self._refusals_logged else logging.WARNING
        self._refusals_logged = True
        log.log(
            level,
            "ignored a message on an invalid topic %s (further ones counted in the status "
            "event as commands_unroutable)",
            safe(topic, 300),
        )

    def _answer_repeat(self, command: Command, earlier: Seen[CommandStatus]) -> None:
        self.counters["commands_repeated"] += 1
        log.info(
            "command %s for %s: reqId %s was already %s; not carried out again",
            command.name,
            command.device,
            safe(command.correlation_id),
            "received and is running" if earlier.outcome is None else "carried out",
        )
        if earlier.outcome is None:
            return  # its one result follows when it ends
        if earlier.payload is not None:
            self._deliver_result(command.device, earlier.payload)
            return
        self._deliver_result(
            command.device,
            self._encode(
                CommandResult(
                    command,
                    earlier.outcome,
                    "repeat of a command already carried out; its full result was published",
                )
            ),
        )

    # -- running -------------------------------------------------------------------------------

    async def _run(self, command: Command) -> None:
        try:
            async with asyncio.timeout(self.timeout):
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
                command, CommandStatus.TIMEOUT, f"no outcome within {self.timeout:g} s"
            )
        except Exception as exc:
            log.exception(
                "command %s for %s raised unexpectedly", safe(command.name), command.device
            )
            result = CommandResult(command, CommandStatus.FAILED, f"internal error: {exc}")
        self._finish(result)

    async def wait_idle(self) -> None:
        """Wait until no command is being carried out."""
        await self._idle.wait()

    def _ended(self, task: asyncio.Task[None], command: Command) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()
        if task.cancelled():  # before or while it ran: it is still owed its one result
            self._finish(
                CommandResult(command, CommandStatus.FAILED, "cancelled: the gateway is stopping")
            )

    def _finish(self, result: CommandResult) -> None:
        command = result.command
        payload = self._encode(result)
        status = result.status
        if len(payload) > codec.MAX_PAYLOAD:
            self.counters["results_too_large"] += 1
            status = CommandStatus.FAILED
            payload = self._encode(
                CommandResult(
                    command,
                    status,
                    f"the result ({len(payload)} bytes) exceeds the platform's "
                    f"{codec.MAX_PAYLOAD}-byte limit; its data is left out",
                )
            )
        self.counters[f"commands_{status.value}"] += 1
        if status is not CommandStatus.OK:
            log.info(
                "command %s for %s: %s: %s",
                safe(command.name),
                command.device,
                status.value,
                safe(result.error),
            )
        if command.correlation_id is not None:
            self.recent.done(command.device, command.correlation_id, status, payload)
        self._deliver_result(command.device, payload)

    def _encode(self, result: CommandResult) -> bytes:
        try:
            return codec.encode_command_result(result, time.time())
        except (TypeError, ValueError) as exc:  # orjson: too deep, or not JSON-encodable
            self.counters["results_unencodable"] += 1
            command = result.command
            plain = Command(
                command.device,
                safe(command.name, 128),
                command.format,
                b"",
                correlation_id=None
                if command.correlation_id is None
                else safe(command.correlation_id, MAX_REQ_ID),
            )
            return codec.encode_command_result(
                CommandResult(
                    plain,
                    CommandStatus.FAILED,
                    f"the result could not be encoded as JSON: {safe(exc)}",
                ),
                time.time(),
            )

    def _deliver_result(self, device: DeviceIdentity, payload: bytes) -> None:
        topic = topics.event_topic(device, self.result_event)
        if not self._deliver(device, OutgoingMessage(topic, payload, 1)):
            self.counters["results_dropped"] += 1

    async def cancel_all(self) -> None:
        """Cancel the commands still in progress (shutdown); each still gets its result."""
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


def _parse_body(fmt: str, payload: bytes) -> tuple[Any, str | None, str | None]:
    """The decoded body, its reqId and a problem that rejects the command (or None)."""
    if fmt != "json":
        return None, None, None
    try:
        data = codec.decode_json(payload)
    except ValueError:
        return None, None, "the payload is not valid JSON"
    if not isinstance(data, dict):
        return data, None, None
    raw_id = data.get("reqId", data.get("correlationId"))
    if not isinstance(raw_id, str | int) or isinstance(raw_id, bool):
        return data, None, None
    req_id = str(raw_id)
    if len(req_id) > MAX_REQ_ID:
        return data, None, f"the reqId has {len(req_id)} characters; at most {MAX_REQ_ID} allowed"
    return data, req_id, None
