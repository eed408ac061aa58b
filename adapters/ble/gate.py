"""Which values become readings: on change, at most every ``min_interval``. Pure code.

Chatty beacons repeat the same advert several times a second; the uplink should see a reading
when something changed, never more often than ``min_interval`` (a change inside the interval is
held and sent when the interval ends), and optionally a repeat of unchanged values every
``max_interval`` so the platform can tell "unchanged" from "stale".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edged.model import JSONValue

_MISSING = object()


class ReportGate:
    """Report-on-change with a minimum and an optional maximum interval, for one device."""

    __slots__ = ("_ignore", "_max", "_min", "_on_change", "last", "pending", "sent_at")

    def __init__(
        self,
        *,
        on_change: bool = True,
        min_interval: float = 0.0,
        max_interval: float = 0.0,
        ignore: Iterable[str] = (),
    ) -> None:
        self._on_change = on_change
        self._min = min_interval
        self._max = max_interval
        self._ignore = frozenset(ignore)
        self.last: Mapping[str, JSONValue] | None = None
        """The values of the last reading sent."""
        self.pending: Mapping[str, JSONValue] | None = None
        """Changed values held back by ``min_interval``."""
        self.sent_at = float("-inf")

    def _changed(self, values: Mapping[str, JSONValue]) -> bool:
        last = self.last
        if last is None:
            return True
        ignore = self._ignore
        if len(values.keys() - ignore) != len(last.keys() - ignore):
            return True
        return any(
            key not in ignore and last.get(key, _MISSING) != value for key, value in values.items()
        )

    def offer(
        self, values: Mapping[str, JSONValue], now: float, *, force: bool = False
    ) -> Mapping[str, JSONValue] | None:
        """The values to publish now, or ``None`` (unchanged, or held until :meth:`due`).

        ``force`` publishes at once, ignoring ``min_interval`` (a button press is news).
        """
        if force:
            return self._send(values, now)
        changed = not self._on_change or self._changed(values)
        if not changed:
            self.pending = None  # back to what was last sent: nothing left to report
            if not self._max or now - self.sent_at < self._max:
                return None
        if now - self.sent_at < self._min:
            self.pending = values
            return None
        return self._send(values, now)

    def due(self, now: float) -> Mapping[str, JSONValue] | None:
        """Held values whose ``min_interval`` has passed, if any."""
        if self.pending is not None and now - self.sent_at >= self._min:
            return self._send(self.pending, now)
        return None

    def _send(self, values: Mapping[str, JSONValue], now: float) -> Mapping[str, JSONValue]:
        self.last = values
        self.pending = None
        self.sent_at = now
        return values
