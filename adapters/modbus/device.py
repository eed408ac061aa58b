"""One device's poll state: which points are due, the plan, the answers, health and reports.

A *cycle* reads every due point once, as one planned block after another; the scheduler runs
one block per turn (:meth:`DevicePoller.step`) so that devices on one line take turns. At the
end of a cycle :meth:`DevicePoller.finish_cycle` builds the reading.

Health: the first silence (no answer after the retries) marks the device silent (reported as
OFFLINE through the sink, which logs the transition once), drops the rest of its cycle and
starts probing: one request, no retries, after a backoff delay that doubles up
to ``quarantine_max``. A silent device therefore costs at most one timeout per probe and
probes come at most once per poll interval. The first answer restores full polling.

Refusals: a Modbus exception response marks only the points of that block bad (the code is in
the reading's ``_errors`` and in the device status). A refusal that says "not here" (codes 1-3)
for a merged read is learned from: the read is split in two and both halves are read at once,
halves refused again split again, so the points (or holes) the device lacks get isolated in a
few requests. What is kept at the end of the poll is only what the search proved: a point
refused on its own is read alone (until it reads again), and a split stays only where both
sides read fine, i.e. where the refused part was the hole between them. Every other split
was scaffolding and is undone, so the rest stays merged as before.
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edged.adapters.base import DeviceSpec, ReadingSink
from edged.adapters.modbus.codec import DataType, make_decoder, make_scaler
from edged.adapters.modbus.commands import WritePlan, plan_write
from edged.adapters.modbus.config import BusConfig, DeviceConfig, PointConfig
from edged.adapters.modbus.link import (
    EXCEPTION_NAMES,
    BadResponseError,
    Link,
    LinkError,
    NoResponseError,
    RefusedError,
)
from edged.adapters.modbus.planner import Block, Item, Limits, plan_reads
from edged.backoff import Backoff
from edged.errors import CommandUnsupported
from edged.model import Command, DeviceState, JSONValue, Reading

log = logging.getLogger(__name__)

_NOT_HERE = frozenset({1, 2, 3})  # illegal function, address, value: the same read fails again
_GATEWAY_SILENT = frozenset({10, 11})  # a gateway saying the device behind it is silent
_MIN_PROBE_DELAY = 0.1  # seconds; probes of a silent device polled back to back

Clock = Callable[[], float]


@dataclass
class _Point:
    name: str
    config: PointConfig
    interval: float
    convert: Callable[[Sequence[Any]], JSONValue]
    next_due: float = 0.0
    break_before: bool = False  # learned: a read must start at this point
    alone: bool = False  # learned: refused on its own, so read with no other point
    error: int | None = None  # the exception code while refused
    reported_error: int | None = None
    reported: Any = None
    has_reported: bool = False

    def item(self) -> Item:
        config = self.config
        return Item(
            self.name, config.kind, config.address, config.size, self.break_before, self.alone
        )


def _error_entry(code: int) -> dict[str, JSONValue]:
    return {"code": code, "error": EXCEPTION_NAMES.get(code, "unknown exception")}


class DevicePoller:
    """Polls one device (one unit id) and turns its commands into writes."""

    def __init__(
        self, spec: DeviceSpec[DeviceConfig], bus: BusConfig, clock: Clock = time.monotonic
    ):
        self.spec = spec
        self.config = spec.section
        self.unit = spec.section.unit
        self.timeout = spec.section.timeout or bus.timeout
        self.retries = bus.retries
        self.url = bus.parsed_url
        self.label = f"{spec.identity} (unit {self.unit} on {self.url})"
        self._clock = clock
        section = spec.section
        self.limits = Limits(
            section.max_registers, section.max_bits, section.max_gap, section.max_bit_gap
        )
        self.points = {
            name: _Point(name, point, point.interval or section.interval, self._converter(point))
            for name, point in section.points.items()
        }
        self._all_points = list(self.points.values())
        self._all_names = frozenset(self.points)
        self._uniform = all(point.config.interval is None for point in self._all_points)
        self.next_due = 0.0
        self.answering: bool | None = None  # None until the first answer or silence
        probe = max(section.interval, _MIN_PROBE_DELAY)
        self._probe_backoff = Backoff(initial=probe, maximum=max(probe, bus.quarantine_max))
        self._plans: dict[frozenset[str], list[Block]] = {}
        self._trials: list[tuple[_Point, frozenset[str]]] = []  # splits not yet proven
        self._pending: deque[Block] = deque()
        self._deferred: list[Block] = []
        self._probing = False
        self._in_cycle = False
        self._cycle_start = 0.0
        self._values: dict[str, JSONValue] = {}
        self._due: list[_Point] = []
        self._last_full_report = -math.inf
        self._sink: ReadingSink | None = None
        self._bad_summary = ""
        self.cycles = 0
        self.requests = 0

    # ------------------------------------------------------------------ scheduling interface

    @property
    def busy(self) -> bool:
        """True while a cycle has reads left."""
        return bool(self._pending)

    @property
    def in_cycle(self) -> bool:
        """True between :meth:`start_cycle` and :meth:`finish_cycle`."""
        return self._in_cycle

    def due(self, now: float) -> bool:
        """Whether a new cycle should start now."""
        return not self._in_cycle and bool(self.points) and now >= self.next_due

    def attach(self, sink: ReadingSink) -> None:
        """Report device states to ``sink`` from now on.

        Called each time the line's runner starts. A (re)started runner has reported the
        device as starting, so its health is unknown again: it is polled at once and its first
        answer (or silence) is reported, as after a line outage.
        """
        self._sink = sink
        self.abandon_cycle()
        self.answering = None
        self._bad_summary = ""
        self._probe_backoff.reset()
        self.next_due = 0.0

    def plan(self, names: frozenset[str]) -> list[Block]:
        """The read plan for the points ``names`` (cached until the device teaches otherwise)."""
        plan = self._plans.get(names)
        if plan is None:
            plan = plan_reads((self.points[name].item() for name in names), self.limits)
            self._plans[names] = plan
        return plan

    def full_plan(self) -> list[Block]:
        """The plan when every point is due (what one full cycle costs)."""
        return self.plan(self._all_names)

    def start_cycle(self, now: float) -> None:
        """Begin a cycle: plan the due points, or one probe request while the device is silent."""
        interval = self.config.interval
        if self._uniform:
            self._due = self._all_points
            blocks = self.plan(self._all_names)
        else:
            slack = interval / 2
            self._due = [p for p in self.points.values() if p.next_due <= now + slack]
            for point in self._due:
                point.next_due = now + point.interval
            blocks = self.plan(frozenset(p.name for p in self._due))
        self._probing = self.answering is False
        if self._probing:
            self._pending = deque(blocks[:1])
            self._deferred = blocks[1:]
        else:
            self._pending = deque(blocks)
            self._deferred = []
        self._values = {}
        self._cycle_start = now
        self._in_cycle = True
        nxt = self.next_due + interval
        self.next_due = nxt if nxt > now else now + interval

    async def step(self, link: Link) -> None:
        """Run the next read of the cycle; :class:`~.link.LineDownError` propagates."""
        block = self._pending.popleft()
        attempts = 1 if self._probing or self.answering is False else 1 + self.retries
        for attempt in range(attempts):
            self.requests += 1
            try:
                values = await link.read(
                    block.kind, self.unit, block.address, block.count, patience=self.timeout
                )
            except (NoResponseError, BadResponseError) as exc:
                if attempt + 1 < attempts:
                    continue
                self._silent(exc)
                return
            except RefusedError as exc:
                if exc.code in _GATEWAY_SILENT:
                    self._silent(exc)
                else:
                    self._answered()
                    self._refused(block, exc.code)
                return
            self._answered()
            self._store(block, values)
            return

    def finish_cycle(self, wall_time: float) -> Reading | None:
        """End the cycle; the reading to publish, or ``None`` when there is nothing to say."""
        self._in_cycle = False
        self.cycles += 1
        self._judge_splits()
        due, self._due = self._due, []
        if self.answering is False:
            return None
        self._update_status()
        full = self.config.report == "all"
        every = self.config.full_report_every
        if not full and every is not None and self._cycle_start - self._last_full_report >= every:
            full = True
            self._last_full_report = self._cycle_start
        values: dict[str, JSONValue] = {}
        errors: dict[str, JSONValue] = {}
        units: dict[str, JSONValue] = {}
        for point in due:
            if point.error is not None:
                if full or point.reported_error != point.error:
                    errors[point.name] = _error_entry(point.error)
                point.reported_error = point.error
                continue
            if point.name not in self._values:
                continue
            value = self._values[point.name]
            if full or point.reported_error is not None or self._changed(point, value):
                values[point.name] = value
                point.reported, point.has_reported = value, True
                if point.config.unit:
                    units[point.name] = point.config.unit
            point.reported_error = None
        if not values and not errors:
            return None
        if errors:
            values["_errors"] = errors
        if units:
            values["_units"] = units
        return Reading(self.spec.identity, self.spec.event, values, wall_time)

    def abandon_cycle(self) -> None:
        """Drop the rest of the cycle (the line went down)."""
        self._pending.clear()
        self._deferred = []
        self._in_cycle = False
        self._due = []
        self._values = {}
        self._judge_splits()

    def line_down(self, reason: str) -> None:
        """The line went away: the device's health is unknown until it answers again."""
        self.abandon_cycle()
        self.answering = None
        self._probe_backoff.reset()
        self.next_due = 0.0
        self._set_state(DeviceState.OFFLINE, reason)

    # --------------------------------------------------------------------------- commands

    def plan_command(self, command: Command) -> WritePlan:
        """The write for ``command``; raises ``CommandRejected``/``CommandUnsupported``."""
        config = self.config.commands.get(command.name)
        if config is None:
            known = ", ".join(self.config.commands) or "none"
            raise CommandUnsupported(f"unknown command {command.name!r}; known: {known}")
        return plan_write(command.name, config, self.config, command.data)

    # ----------------------------------------------------------------------------- internals

    def _changed(self, point: _Point, value: Any) -> bool:
        if not point.has_reported:
            return True
        old = point.reported
        deadband = point.config.deadband
        if (
            deadband is not None
            and isinstance(value, int | float)
            and isinstance(old, int | float)
            and not isinstance(value, bool)
        ):
            return abs(value - old) > deadband
        return bool(value != old)

    def _store(self, block: Block, values: list[int] | list[bool]) -> None:
        for item in block.items:
            point = self.points[item.name]
            offset = item.address - block.address
            self._values[item.name] = point.convert(values[offset : offset + item.size])
            if point.error is not None:
                log.info("%s: point %s reads again", self.label, item.name)
                point.error = None
            if point.alone:  # it is there again: merge it with its neighbours once more
                point.alone = False
                self._plans.clear()

    def _converter(self, config: PointConfig) -> Callable[[Sequence[Any]], JSONValue]:
        """The function turning the point's raw registers (or bit) into its reported value."""
        data_type = config.data_type
        if data_type is DataType.BOOL:
            return lambda bits: bool(bits[0])
        decoder = make_decoder(
            data_type,
            word_order=self.config.word_order_of(config),
            byte_order=self.config.byte_order_of(config),
            bit=config.bit or 0,
            width=config.width,
        )
        if not config.numeric:
            return decoder
        scaler = make_scaler(config.scale, config.offset, config.decimals)
        return lambda registers: scaler(decoder(registers))  # type: ignore[arg-type]

    def _refused(self, block: Block, code: int) -> None:
        if code in _NOT_HERE and len(block.items) > 1:
            self._learn(block)
            return
        if code in _NOT_HERE:
            point = self.points[block.items[0].name]
            if not point.alone:
                point.alone = True
                self._plans.clear()
        for item in block.items:
            point = self.points[item.name]
            if point.error != code:
                log.warning("%s: point %s refused: %s", self.label, item.name, RefusedError(code))
            point.error = code

    def _learn(self, block: Block) -> None:
        """Split a refused merged read in two; halves that are refused again split further.

        A point the device does not have ends up read alone (and marked bad). The split is a
        trial until the end of the poll (see :meth:`_judge_splits`).
        """
        middle = self.points[block.items[len(block.items) // 2].name]
        middle.break_before = True
        self._trials.append((middle, frozenset(block.names)))
        log.debug(
            "%s: refused read of %s; splitting before %s", self.label, block.names, middle.name
        )
        self._plans.clear()
        points = (self.points[item.name].item() for item in block.items)
        self._pending.extendleft(reversed(plan_reads(points, self.limits)))

    def _judge_splits(self) -> None:
        """Keep the splits of this poll that the device proved necessary, undo the others.

        A split is proven when every point of the refused read it split answered on its own
        side: the refusal then came from the hole between the two sides. When a point inside
        was refused (it is read alone now) or the poll ended early, the split only served the
        search, and the minimum plan around the refused points is restored; a split that was
        needed after all is learned again, and then proven, at the next refusal.
        """
        trials, self._trials = self._trials, []
        for point, names in trials:
            if not names <= self._values.keys() and point.break_before:
                point.break_before = False
                self._plans.clear()

    def _answered(self) -> None:
        # Health changes are reported through the sink, which logs each transition once.
        if self.answering is False:
            log.debug("%s answers again", self.label)
        if not self.answering:
            self._probe_backoff.reset()
            self._bad_summary = ""
            self._set_state(DeviceState.ONLINE, "")
        self.answering = True
        if self._probing:
            self._probing = False
            self._pending.extend(self._deferred)
            self._deferred = []

    def _silent(self, error: LinkError) -> None:
        if self.answering is not False:
            log.debug("%s does not answer (%s); probing it with backoff", self.label, error)
            self._set_state(DeviceState.OFFLINE, f"{error} ({self.url}); probing with backoff")
        else:
            log.debug("%s still silent: %s", self.label, error)
        self.answering = False
        self._pending.clear()
        self._deferred = []
        self._probing = False
        self.next_due = self._clock() + self._probe_backoff.next_delay()

    def _update_status(self) -> None:
        bad = {p.name: p.error for p in self.points.values() if p.error is not None}
        summary = ", ".join(f"{name} ({RefusedError(code)})" for name, code in bad.items())
        if summary != self._bad_summary:
            self._bad_summary = summary
            detail = f"{len(bad)} point(s) refused: {summary}" if bad else ""
            self._set_state(DeviceState.ONLINE, detail)

    def _set_state(self, state: DeviceState, detail: str) -> None:
        if self._sink is not None:
            self._sink.set_state(self.spec.identity, state, detail)
