"""What the emulator saw and sent, the listeners told about it, and the waits on it.

Every list here is guarded by the emulator's one condition variable (``cond``): the network
thread appends under it and calls ``notify_all()``, and the waits re-check after every change.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from edged.emulator.records import (
    DeviceRecord,
    DMExchange,
    DMMessage,
    Publication,
    ReceivedEvent,
    Record,
    SentCommand,
    SentNotify,
    Violation,
)
from edged.emulator.registry import DeviceRegistry
from edged.model import DeviceIdentity

log = logging.getLogger("edged.emulator")

T = TypeVar("T")
Listener = Callable[[Record], None]


def _matches_device(device: DeviceIdentity | str | None, candidate: DeviceIdentity) -> bool:
    if device is None:
        return True
    if isinstance(device, str):
        return candidate.device_id == device
    return candidate == device


class Recorder:
    """The emulator's recorded state, its listeners and its waits.

    The public lists and the registry may be read or changed only with ``cond`` held; whoever
    changes them calls ``cond.notify_all()`` before releasing it.

    Args:
        cond: The emulator's condition variable (over an RLock, so wait predicates may take it).
        connected: Whether the emulator is connected, for the message of a failed wait.
    """

    def __init__(self, cond: threading.Condition, connected: Callable[[], bool]) -> None:
        self.cond = cond
        self._connected = connected
        self._generation = 0  # bumped by clear(): running waits restart their scan
        self.publications: list[Publication] = []
        self.events: list[ReceivedEvent] = []
        self.violations: list[Violation] = []
        self.dm_messages: list[DMMessage] = []
        self.dm_exchanges: list[DMExchange] = []
        self.commands: list[SentCommand] = []
        self.notifies: list[SentNotify] = []
        self.registry = DeviceRegistry()
        # clear() keeps these three: an answer to a request sent before it is still matched.
        self.issued: dict[str, DMMessage] = {}  # every DM request the emulator sent, by reqId
        self.outstanding: set[str] = set()  # ... of which no answer came yet
        self.dm_responses: dict[str, DMMessage] = {}  # first answer per reqId
        self._listeners: list[Listener] = []
        self.next_change: Callable[[], float | None] | None = None
        """``time.monotonic()`` of the next state change that comes with time alone, if any
        (called with ``cond`` held)."""

    def device(self, device: DeviceIdentity) -> DeviceRecord | None:
        """The registry record of ``device``, ``None`` when never seen."""
        with self.cond:
            return self.registry.get(device)

    def clear(self, *, registry: bool) -> None:
        """Forget recorded messages, violations and exchanges (and the registry if asked)."""
        with self.cond:
            self._generation += 1
            for recorded in (
                self.publications,
                self.events,
                self.violations,
                self.dm_messages,
                self.dm_exchanges,
                self.commands,
                self.notifies,
            ):
                recorded.clear()
            if registry:
                self.registry.clear()
            self.cond.notify_all()

    # -- listeners -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every record :meth:`emit` is given; returns its remover."""
        with self.cond:
            self._listeners.append(listener)

        def remove() -> None:
            with self.cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def emit(self, records: list[Record]) -> None:
        """Hand ``records`` to every listener, in order (called without ``cond`` held)."""
        if not records:
            return
        with self.cond:
            listeners = list(self._listeners)
        for listener in listeners:
            for record in records:
                try:
                    listener(record)
                except Exception:  # a broken listener must not stop the emulator
                    log.exception("emulator listener %r failed", listener)
        if listeners:
            with self.cond:  # wake waits whose predicates look at what listeners did
                self.cond.notify_all()

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], T], timeout: float, what: str) -> T:
        """Block until ``predicate()`` (run with ``cond`` held) is truthy and return its value.

        Raises:
            TimeoutError: not truthy within ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        with self.cond:
            while not (result := predicate()):
                now = time.monotonic()
                if now >= deadline:
                    raise TimeoutError(f"{what or 'condition'} not met within {timeout:g} s")
                # Some changes come with time alone (a registration falling due), with no
                # notify_all(): wake for them too.
                change = self.next_change() if self.next_change is not None else None
                wake = deadline if change is None else min(deadline, max(change, now + 0.001))
                self.cond.wait(wake - now)
        return result

    def wait_for_events(
        self,
        count: int,
        device: DeviceIdentity | str | None,
        event: str | None,
        predicate: Callable[[ReceivedEvent], bool] | None,
        timeout: float,
    ) -> list[ReceivedEvent]:
        """The first ``count`` recorded events that match, once there are that many."""

        def match(item: ReceivedEvent) -> bool:
            return (
                _matches_device(device, item.device)
                and (event is None or item.event == event)
                and (predicate is None or predicate(item))
            )

        what = f"events device={device or '*'} event={event or '*'}"
        return self._wait_matching(lambda: self.events, match, count, timeout, what)

    def wait_for_dm(
        self,
        suffix: str | None,
        device: DeviceIdentity | str | None,
        count: int,
        predicate: Callable[[DMMessage], bool] | None,
        timeout: float,
    ) -> list[DMMessage]:
        """The first ``count`` matching DM messages the gateway sent, once there are that many."""

        def match(item: DMMessage) -> bool:
            return (
                item.direction == "up"
                and _matches_device(device, item.device)
                and (suffix is None or item.suffix == suffix)
                and (predicate is None or predicate(item))
            )

        what = f"DM messages device={device or '*'} suffix={suffix or '*'}"
        return self._wait_matching(lambda: self.dm_messages, match, count, timeout, what)

    def wait_for_violations(self, count: int, rule: str | None, timeout: float) -> list[Violation]:
        """The first ``count`` violations (of ``rule``, if given), once there are that many."""
        return self._wait_matching(
            lambda: self.violations,
            lambda v: rule is None or v.rule == rule,
            count,
            timeout,
            f"violations rule={rule or '*'}",
        )

    def _wait_matching(
        self,
        source: Callable[[], list[T]],
        match: Callable[[T], bool],
        count: int,
        timeout: float,
        what: str,
    ) -> list[T]:
        # Scans only what arrived since the last check, so waiting for many items stays linear.
        found: list[T] = []
        scanned = 0
        generation = self._generation

        def ready() -> bool:
            nonlocal scanned, generation
            if generation != self._generation:
                found.clear()
                scanned, generation = 0, self._generation
            items = source()
            for index in range(scanned, len(items)):
                if match(items[index]):
                    found.append(items[index])
            scanned = len(items)
            return len(found) >= count

        try:
            self.wait_for(ready, timeout, what)
        except TimeoutError:
            raise TimeoutError(
                f"{what}: {len(found)} of {count} within {timeout:g} s; {self._summary()}"
            ) from None
        return found[:count]

    def _summary(self) -> str:
        with self.cond:
            counts = Counter(f"{e.device}:{e.event}" for e in self.events)
            dm = Counter(f"{m.device}:{m.suffix}" for m in self.dm_messages if m.direction == "up")
            shown = ", ".join(f"{key} x{n}" for key, n in sorted(counts.items())) or "none"
            shown_dm = ", ".join(f"{key} x{n}" for key, n in sorted(dm.items())) or "none"
            return (
                f"events seen: {shown}; DM messages from the gateway: {shown_dm}; "
                f"violations: {len(self.violations)}; connected: {self._connected()}"
            )
