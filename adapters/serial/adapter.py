"""The serial adapter runtime: one runner per port, reading, polling and commanding its device.

Data path: the loop calls :class:`~edged.adapters.serial.port.SerialLink` when the fd is
readable; the chunk goes through the framer right there, reply frames go to a waiting query or
command, and the rest queue for the consumer task, which parses them and awaits
``sink.emit``. If the sink applies backpressure and the queue grows, reading pauses.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from edged.adapters.base import Adapter, AdapterContext, DeviceSpec, Location, ReadingSink
from edged.adapters.serial import nmea
from edged.adapters.serial.config import (
    CommandConfig,
    DeviceConfig,
    FramingConfig,
    ParserConfig,
    QueryConfig,
    Settings,
    bytes_regex,
    to_bytes,
)
from edged.adapters.serial.framing import FixedFramer, Framer, LineFramer, MarkerFramer
from edged.adapters.serial.liveness import Liveness
from edged.adapters.serial.parsers import (
    FrameParser,
    Parsed,
    ParseError,
    build_parser,
    describe_frame,
)
from edged.adapters.serial.port import PortError, PortLostError, SerialLink, WriteTimeout
from edged.adapters.serial.templates import Template
from edged.adapters.serial.throttle import EventThrottle
from edged.errors import CommandFailed, CommandUnsupported
from edged.linkretry import LinkRetry
from edged.logsetup import device_extra
from edged.model import Command, DeviceIdentity, DeviceState, JSONValue, Reading
from edged.problems import ProblemLog

log = logging.getLogger("edged.adapters.serial")

HIGH_WATER = 2048
"""Queued frames at which reading pauses until the consumer catches up."""
LOW_WATER = 256
STABLE_AFTER = 10.0
"""Seconds a reopened port must stay up before the reopen backoff starts again from the start
(and before a reopened port that has received nothing counts as back)."""
FRAME_KINDS = ("decode", "checksum", "parse", "nomatch", "overlong", "garbage")

LinkFactory = Callable[[DeviceConfig], SerialLink]


def build_framer(config: FramingConfig) -> Framer:
    """The framer a validated ``framing:`` block describes."""
    if config.line is not None:
        line = config.line
        return LineFramer(to_bytes(line.delimiter), line.max_length, line.strip)
    if config.fixed is not None:
        return FixedFramer(config.fixed.length)
    assert config.markers is not None
    markers = config.markers
    return MarkerFramer(to_bytes(markers.start), to_bytes(markers.end), markers.max_length)


@dataclass
class SerialStats:
    """Counters of one device since the daemon started."""

    bytes_in: int = 0
    frames: int = 0
    readings: int = 0
    ignored: int = 0
    throttled: int = 0
    replies: int = 0
    reply_timeouts: int = 0
    write_timeouts: int = 0
    fixes: int = 0
    opens: int = 0
    open_failures: int = 0
    losses: int = 0


@dataclass
class _Waiter:
    """A query or command waiting for its reply frames."""

    expect: re.Pattern[bytes] | None
    needed: int
    future: asyncio.Future[list[bytes]]
    frames: list[bytes] = field(default_factory=list)


@dataclass(frozen=True)
class _Query:
    name: str
    data: bytes
    expect: re.Pattern[bytes] | None
    frames: int
    timeout: float
    parser: FrameParser
    event: str | None


@dataclass(frozen=True)
class _CommandPlan:
    name: str
    template: Template
    config: CommandConfig
    expect: re.Pattern[bytes] | None
    error: re.Pattern[bytes] | None
    parser: FrameParser | None


class PortDownError(Exception):
    """A query or command needs the port while it is not open."""


class SerialDevice(Adapter):
    """Owns one serial port and the device on it; restarts nothing itself but the port.

    Device state changes (down, offline, online; the rule is in
    :mod:`~edged.adapters.serial.liveness`) go to the sink, which logs them as warnings; this
    class logs the port-level story at INFO (once when a failure episode starts, once when the
    port has been back for ``stable_after`` seconds) so nothing is said twice at WARNING, and
    bad input (parse, checksum, over-long frames, stalled writes) once per episode.

    A missing or failing port never ends :meth:`run`: the device is marked ``down`` and the
    port reopened with backoff (:class:`~edged.linkretry.LinkRetry`). ``frame_hook`` (used by
    ``edged serial monitor``) sees every frame as it is cut, replies included, before anything
    else happens to it.
    """

    def __init__(
        self,
        spec: DeviceSpec[DeviceConfig],
        settings: Settings,
        context: AdapterContext,
        *,
        link_factory: LinkFactory = SerialLink.open,
        frame_hook: Callable[[bytes], None] | None = None,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        config = spec.section
        super().__init__(f"serial:{config.port}", [spec.identity])
        self.spec = spec
        self.config = config
        self.identity: DeviceIdentity = spec.identity
        self.settings = settings
        self.context = context
        self.stats = SerialStats()
        self.state = DeviceState.STARTING
        self.last_fix: nmea.Fix | None = None
        self._link_factory = link_factory
        self._frame_hook = frame_hook
        self._stable_after = stable_after
        label = f"{spec.identity} on {config.port}"
        self.problems = ProblemLog(log, label)
        # Polls are slow and periodic: report every change of a query's answering state.
        self.reply_problems = ProblemLog(log, label, quiet=0.0)
        self._label = label
        self._framer = build_framer(config.framing)
        self._parser = self._make_parser(config.parser, with_location=True)
        self._ignore = bytes_regex(config.ignore, config.encoding) if config.ignore else None
        self._queries = [self._make_query(index, q) for index, q in enumerate(config.queries, 1)]
        self._commands = {name: self._make_command(name, c) for name, c in config.commands.items()}
        self._frames: deque[tuple[float, list[bytes]]] = deque()
        self._queued = 0  # frames in _frames
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._link: SerialLink | None = None
        self._lost: Exception | None = None
        self._waiter: _Waiter | None = None
        self._sink: ReadingSink | None = None
        self._down_detail = "not opened yet"
        self._state_detail = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._last_rx = 0.0
        self._idle_handle: asyncio.TimerHandle | None = None
        self._confirm_handle: asyncio.TimerHandle | None = None
        self._liveness = Liveness(
            polled=bool(self._queries), idle_timeout=config.idle_timeout, stable_after=stable_after
        )
        self._poll_crash: BaseException | None = None
        self._throttle = EventThrottle(config.min_interval)
        self._seen_overlong = 0
        self._seen_garbage = 0
        self._seen_discarded = 0

    # --- construction helpers ---------------------------------------------------------------

    def _make_parser(
        self, config: ParserConfig | None, *, with_location: bool
    ) -> FrameParser | None:
        if config is None:
            return None
        on_fix = self._on_fix if with_location and config.nmea is not None else None
        return build_parser(config, self.config.encoding, on_fix)

    def _regex(self, pattern: str | None) -> re.Pattern[bytes] | None:
        return bytes_regex(pattern, self.config.encoding) if pattern is not None else None

    def _make_query(self, index: int, query: QueryConfig) -> _Query:
        parser = self._make_parser(query.parser, with_location=False) or self._parser
        assert parser is not None  # the config model checks this
        data = (
            query.send.encode(self.config.encoding)
            if query.send is not None
            else bytes.fromhex(query.send_hex or "")
        )
        return _Query(
            name=query.name or f"query{index}",
            data=data,
            expect=self._regex(query.expect),
            frames=query.frames,
            timeout=query.timeout,
            parser=parser,
            event=query.event,
        )

    def _make_command(self, name: str, command: CommandConfig) -> _CommandPlan:
        hex_bytes = command.send_hex is not None
        text = command.send_hex if hex_bytes else command.send
        assert text is not None
        return _CommandPlan(
            name=name,
            template=Template(text, hex_bytes=hex_bytes, encoding=self.config.encoding),
            config=command,
            expect=self._regex(command.expect),
            error=self._regex(command.error),
            parser=self._make_parser(command.parser, with_location=False) or self._parser,
        )

    # --- public surface ---------------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        """Every counter: traffic, bad input by kind, port events."""
        out = asdict(self.stats)
        out.update(self.problems.counts)
        out.pop("garbage", None)  # counted in bytes below
        out["overlong"] = self._framer.overlong
        out["garbage_bytes"] = self._framer.garbage
        out["discarded_bytes"] = self._framer.discarded
        return out

    async def run(self, sink: ReadingSink) -> None:
        """Open the port (retrying with backoff), read and poll until cancelled."""
        self._sink = sink
        self.state, self._state_detail = DeviceState.STARTING, ""
        sink.set_state(self.identity, DeviceState.STARTING, "")
        reopen = self.settings.reopen
        retry = LinkRetry(
            log,
            self._label,
            initial=reopen.initial,
            maximum=reopen.max,
            stable_after=self._stable_after,
            extra=device_extra(self.identity, self.name),
        )
        try:
            while True:
                try:
                    link = self._link_factory(self.config)
                except PortError as exc:
                    self.stats.open_failures += 1
                    self._set_state(DeviceState.DOWN, f"cannot open {self.config.port}: {exc}")
                    await asyncio.sleep(retry.attempt_failed(f"cannot open: {exc}", logging.INFO))
                    continue
                self.stats.opens += 1
                if retry.failing:
                    log.debug("%s: port open again", self._label)
                else:
                    log.info("%s: port open", self._label)
                # In a failure episode the reopened port must prove itself before the device
                # counts as back (see liveness.py).
                confirmed = not retry.failing
                retry.connected()
                try:
                    reason = await self._session(link, confirmed=confirmed)
                finally:
                    link.close()
                self.stats.losses += 1
                self._set_state(DeviceState.DOWN, f"port lost: {reason}")
                await asyncio.sleep(retry.lost(f"port lost: {reason}", logging.INFO))
        finally:
            retry.close()
            self._sink = None

    async def execute(self, command: Command) -> Mapping[str, JSONValue] | None:
        """Write a configured command's template; return the reply when configured to."""
        plan = self._commands.get(command.name)
        if plan is None:
            known = ", ".join(sorted(self._commands)) or "none"
            raise CommandUnsupported(f"unknown command {command.name!r}; known: {known}")
        data = plan.template.render(command.data)
        config = plan.config
        try:
            if config.reply == "none":
                async with self._lock:
                    await self._write(self._require_link(), data)
                return {"sent": len(data)}
            frames = await self._exchange(data, plan.expect, config.frames, config.timeout)
        except TimeoutError:
            raise CommandFailed(f"no reply within {config.timeout:g} s") from None
        except (PortLostError, PortDownError, WriteTimeout) as exc:
            raise CommandFailed(str(exc)) from None
        text = "\n".join(frame.decode(self.config.encoding, errors="replace") for frame in frames)
        if plan.error is not None and any(plan.error.search(frame) for frame in frames):
            raise CommandFailed(f"the device answered with an error: {text!r}")
        result: dict[str, JSONValue] = {"reply": text}
        if config.reply == "parsed":
            assert plan.parser is not None
            values: dict[str, JSONValue] = {}
            try:
                for frame in frames:
                    for parsed in plan.parser.parse(frame):
                        values.update(parsed.values)
            except ParseError as exc:
                raise CommandFailed(f"cannot parse the reply {text!r}: {exc}") from None
            result["values"] = values
        return result

    # --- port session -----------------------------------------------------------------------

    async def _session(self, link: SerialLink, *, confirmed: bool) -> str:
        """Read and poll one open port until it is lost; returns why it was lost."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        self._link = link
        self._lost = None
        self._poll_crash = None
        self._frames.clear()
        self._queued = 0
        self._framer.reset()
        self._last_rx = loop.time()
        link.start(loop, self._on_data, self._on_lost)
        self._liveness.opened(confirmed=confirmed)
        self._refresh_state()
        if not confirmed:
            self._confirm_handle = loop.call_later(self._stable_after, self._confirm)
        if self.config.idle_timeout is not None:
            self._idle_handle = loop.call_later(self.config.idle_timeout, self._idle_check)
        poller = None
        if self._queries:
            poller = asyncio.create_task(self._poll_loop(), name=f"{self.name}:poll")
            poller.add_done_callback(self._poller_done)
        try:
            return await self._consume()
        finally:
            self._link = None
            for handle in (self._idle_handle, self._confirm_handle):
                if handle is not None:
                    handle.cancel()
            self._idle_handle = self._confirm_handle = None
            waiter = self._waiter
            if waiter is not None and not waiter.future.done():
                waiter.future.set_exception(PortLostError(f"{self.config.port} closed"))
            if poller is not None:
                poller.remove_done_callback(self._poller_done)
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)

    def _poller_done(self, task: asyncio.Task[None]) -> None:
        # The poll loop only ends with the session; anything else is a bug that must end the
        # session loudly (run() raises it to the supervisor) rather than stop polling silently.
        if not task.cancelled() and task.exception() is not None:
            self._poll_crash = task.exception()
            self._wake.set()

    def _confirm(self) -> None:
        self._confirm_handle = None
        self._liveness.confirm()
        self._refresh_state()

    def _on_lost(self, exc: Exception) -> None:
        self._lost = exc
        self._wake.set()

    def _on_data(self, data: bytes) -> None:
        """Called by the loop with each chunk read: frame it, route replies, queue the rest."""
        now = time.time()
        assert self._loop is not None
        self._last_rx = self._loop.time()
        stats = self.stats
        stats.bytes_in += len(data)
        framer = self._framer
        frames = framer.feed(data)
        if framer.discarded != self._seen_discarded:
            self._note_discarded()
        if self._liveness.received():
            self._refresh_state()
        if not frames:
            return
        stats.frames += len(frames)
        if self._frame_hook is not None:
            for frame in frames:
                self._frame_hook(frame)
        if self._waiter is not None:
            frames = self._offer_reply(self._waiter, frames)
            if not frames:
                return
        self._frames.append((now, frames))
        self._queued += len(frames)
        if self._queued >= HIGH_WATER and self._link is not None:
            self._link.pause_reading()
        self._wake.set()

    def _note_discarded(self) -> None:
        framer = self._framer
        if framer.overlong != self._seen_overlong:
            self.problems.fail(
                "overlong", f"dropped a frame over max_length ({framer.max_length} bytes)"
            )
        if framer.garbage != self._seen_garbage:
            self.problems.fail("garbage", "discarding bytes outside frames or truncated frames")
        self._seen_overlong = framer.overlong
        self._seen_garbage = framer.garbage
        self._seen_discarded = framer.discarded

    def _offer_reply(self, waiter: _Waiter, frames: list[bytes]) -> list[bytes]:
        rest: list[bytes] = []
        ignore = self._ignore
        for frame in frames:
            if waiter.future.done() or (ignore is not None and ignore.search(frame)):
                rest.append(frame)
            elif waiter.expect is None or waiter.expect.search(frame):
                waiter.frames.append(frame)
                if len(waiter.frames) >= waiter.needed:
                    waiter.future.set_result(waiter.frames)
            else:
                rest.append(frame)
        return rest

    async def _consume(self) -> str:
        """Parse queued frames and emit readings until the port is lost; returns why."""
        queue, wake = self._frames, self._wake
        sink = self._sink
        assert sink is not None
        identity, default_event = self.identity, self.spec.event
        throttle = self._throttle if self.config.min_interval else None
        stats = self.stats
        while True:
            if not queue:
                if self._poll_crash is not None:
                    raise self._poll_crash
                if self._lost is not None:
                    return str(self._lost)
                wake.clear()
                await wake.wait()
                continue
            when, frames = queue.popleft()
            self._queued -= len(frames)
            if self._queued <= LOW_WATER and self._link is not None:
                self._link.resume_reading()
            for frame in frames:
                for parsed in self._parse_unsolicited(frame):
                    event = parsed.event or default_event
                    if throttle is not None and not throttle.allow(event, when):
                        stats.throttled += 1
                        continue
                    stats.readings += 1
                    await sink.emit(Reading(identity, event, parsed.values, when))

    def _parse_unsolicited(self, frame: bytes) -> Sequence[Parsed]:
        if self._ignore is not None and self._ignore.search(frame):
            self.stats.ignored += 1
            return ()
        parser = self._parser
        if parser is None:
            self.stats.ignored += 1
            return ()
        try:
            parsed = parser.parse(frame)
        except ParseError as exc:
            self.problems.fail(exc.kind, f"{exc}: {describe_frame(frame)}")
            return ()
        if self.problems.failing:
            self.problems.ok(*FRAME_KINDS)
        return parsed

    def _idle_check(self) -> None:
        idle = self.config.idle_timeout
        assert idle is not None
        loop = asyncio.get_running_loop()
        silent = loop.time() - self._last_rx
        if silent >= idle:
            if self._liveness.receiving:
                log.info("%s: nothing received for %g s", self._label, idle)
                self._liveness.silent()
                self._refresh_state()
            delay = idle
        else:
            delay = idle - silent
        self._idle_handle = loop.call_later(delay, self._idle_check)

    # --- queries ----------------------------------------------------------------------------

    def _require_link(self) -> SerialLink:
        if self._link is None:
            raise PortDownError(f"port {self.config.port} is not open ({self._down_detail})")
        return self._link

    async def _exchange(
        self, data: bytes, expect: re.Pattern[bytes] | None, frames: int, reply_timeout: float
    ) -> list[bytes]:
        """Write ``data`` and return the next ``frames`` reply frames; TimeoutError if late."""
        async with self._lock:
            link = self._require_link()
            waiter = _Waiter(expect, frames, asyncio.get_running_loop().create_future())
            self._waiter = waiter
            try:
                await self._write(link, data)
                async with asyncio.timeout(reply_timeout):
                    reply = await waiter.future
            finally:
                self._waiter = None
                if waiter.future.done() and not waiter.future.cancelled():
                    waiter.future.exception()  # retrieved: the port loss is reported elsewhere
            self.stats.replies += 1
            return reply

    async def _write(self, link: SerialLink, data: bytes) -> None:
        """Write to the port; a stalled write is counted and logged once per episode."""
        try:
            await link.write(data, self.config.write_timeout)
        except WriteTimeout as exc:
            self.stats.write_timeouts += 1
            self.reply_problems.fail("writing", str(exc))
            raise
        self.reply_problems.ok("writing")

    async def _poll_loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        try:
            while True:
                await self._poll()
                next_at += self.config.poll
                now = loop.time()
                next_at = max(next_at, now)
                await asyncio.sleep(next_at - now)
        except (PortLostError, PortDownError) as exc:
            if self._lost is None:  # make sure the session ends and the port is reopened
                self._on_lost(exc)

    async def _poll(self) -> None:
        """Send each query once; the answers decide the device's state (see liveness.py)."""
        answered = 0
        detail = "no reply to any query"
        for query in self._queries:
            try:
                if await self._run_query(query):
                    answered += 1
            except WriteTimeout as exc:
                # The port takes nothing: the other queries would stall the same way.
                detail = str(exc)
                break
        if answered:
            self.reply_problems.ok("all queries")
        else:
            self.reply_problems.fail("all queries", "no reply to any query", logging.INFO)
        self._liveness.poll_done(answered > 0, detail)
        self._refresh_state()

    async def _run_query(self, query: _Query) -> bool:
        """True if ``query`` was answered; WriteTimeout if it could not be sent."""
        try:
            frames = await self._exchange(query.data, query.expect, query.frames, query.timeout)
        except TimeoutError:
            self.stats.reply_timeouts += 1
            self.reply_problems.fail(
                query.name, f"no reply to {query.name} within {query.timeout:g} s"
            )
            return False
        self.reply_problems.ok(query.name)
        sink = self._sink
        assert sink is not None
        now = time.time()
        for frame in frames:
            try:
                parsed = query.parser.parse(frame)
            except ParseError as exc:
                self.problems.fail(
                    exc.kind, f"reply to {query.name}: {exc}: {describe_frame(frame)}"
                )
                continue
            if self.problems.failing:
                self.problems.ok(*FRAME_KINDS)
            for item in parsed:
                self.stats.readings += 1
                event = query.event or item.event or self.spec.event
                await sink.emit(Reading(self.identity, event, item.values, now))
        return True

    # --- state and location -----------------------------------------------------------------

    def _refresh_state(self) -> None:
        """Report the state the liveness rule gives while the port is open."""
        if self._link is not None:
            self._set_state(*self._liveness.state())

    def _set_state(self, state: DeviceState, detail: str = "") -> None:
        if state is DeviceState.DOWN:
            self._down_detail = detail
        if state is self.state and detail == self._state_detail:
            return
        self.state = state
        self._state_detail = detail
        if self._sink is not None:
            self._sink.set_state(self.identity, state, detail)

    def _on_fix(self, fix: nmea.Fix) -> None:
        self.stats.fixes += 1
        self.last_fix = fix
        if not self.config.location_source or not fix.valid:
            return
        assert fix.latitude is not None
        assert fix.longitude is not None
        self.context.location.publish(
            Location(
                latitude=fix.latitude,
                longitude=fix.longitude,
                elevation=fix.altitude,
                measured_at=fix.epoch if fix.epoch is not None else time.time(),
            )
        )


def create_adapters(
    devices: Sequence[DeviceSpec[Any]], settings: Settings, context: AdapterContext
) -> list[Adapter]:
    """One runner per device (the config allows one device per port)."""
    return [SerialDevice(spec, settings, context) for spec in devices]
