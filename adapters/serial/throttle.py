"""``min_interval``: at most one unsolicited reading per event name per interval, in bounded memory.

Event names can come from the device itself (a JSON parser's ``event_key``), so the table of
last publication times must not grow with whatever the device sends. An entry older than the
interval can never hold a reading back, so it is dropped; if more than ``capacity`` names are
fresh at once, the least recently published is forgotten (that name may then publish once
early).
"""

from __future__ import annotations

from collections import OrderedDict

CAPACITY = 1024
"""Event names remembered at most."""


class EventThrottle:
    """Decides whether a reading of ``event`` at ``when`` may be published."""

    def __init__(self, interval: float, capacity: int = CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.interval = interval
        self.capacity = capacity
        self._last: OrderedDict[str, float] = OrderedDict()  # oldest publication first

    def __len__(self) -> int:
        return len(self._last)

    def allow(self, event: str, when: float) -> bool:
        """True (and remembered) if ``event`` was not published in the last interval."""
        last = self._last.get(event)
        if last is not None and when - last < self.interval:
            return False
        self._last[event] = when
        self._last.move_to_end(event)
        self._forget(when)
        return True

    def _forget(self, now: float) -> None:
        entries = self._last
        while entries:
            event, last = next(iter(entries.items()))
            if now - last < self.interval and len(entries) <= self.capacity:
                return
            del entries[event]
