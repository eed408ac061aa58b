"""Requests seen recently, per device and request id, with their outcome: nothing twice.

The platform may deliver a command or a device-management request again (QoS 1 redelivery
after a reconnect, a persistent session replayed after a restart). A :class:`RequestBook`
remembers each ``(device, reqId)`` seen in a window: a repeat of a request that ended gets its
first answer again, a repeat of one still running gets nothing now (the one answer sent when it
ends serves both), and neither is carried out a second time. Bounded in entries and in time
(the oldest forgotten first); held in memory, so it survives reconnects, not a restart.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from edged.model import DeviceIdentity

OutcomeT = TypeVar("OutcomeT")


@dataclass(slots=True)
class Seen(Generic[OutcomeT]):
    """One remembered request: ``outcome`` is None while it runs; ``payload`` is its first
    answer, when small enough to keep."""

    at: float
    outcome: OutcomeT | None = None
    payload: bytes | None = None

    @property
    def running(self) -> bool:
        """No outcome yet."""
        return self.outcome is None


class RequestBook(Generic[OutcomeT]):
    """The requests seen per device in the last ``seconds`` (at most ``entries``)."""

    def __init__(
        self,
        *,
        seconds: float,
        entries: int,
        keep_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.entries = entries
        self.keep_bytes = keep_bytes
        self.clock = clock
        self._seen: OrderedDict[tuple[DeviceIdentity, str], Seen[OutcomeT]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_in(self, device: DeviceIdentity, req_id: str) -> Seen[OutcomeT] | None:
        """The earlier entry for this request, or None (then it is recorded as running)."""
        self._expire()
        key = (device, req_id)
        earlier = self._seen.get(key)
        if earlier is not None:
            return earlier
        self._seen[key] = Seen(self.clock())
        return None

    def done(self, device: DeviceIdentity, req_id: str, outcome: OutcomeT, payload: bytes) -> None:
        """Record the outcome and answer of a request (the first one only)."""
        self._expire()
        entry = self._seen.get((device, req_id))
        if entry is None:
            entry = self._seen[(device, req_id)] = Seen(self.clock())
        if entry.outcome is None:
            entry.outcome = outcome
            entry.payload = payload if len(payload) <= self.keep_bytes else None

    def forget(self, device: DeviceIdentity, req_id: str) -> None:
        """Drop a request (one refused as busy may be sent again and then carried out)."""
        self._seen.pop((device, req_id), None)

    def _expire(self) -> None:
        now, seen = self.clock(), self._seen
        while seen:
            oldest = next(iter(seen.values()))
            if now - oldest.at < self.seconds and len(seen) < self.entries:
                break
            seen.popitem(last=False)
