"""Exactly one answer per platform request, and no action carried out twice.

The platform may deliver a request again (QoS 1 redelivery after a reconnect, a persistent
session replayed after a restart). :class:`AnswerBook` remembers each ``(device, reqId)`` seen
recently: a repeat of a request that was answered gets the same answer again, a repeat of one
still running gets nothing now (the one answer sent when it ends serves both), and neither
is carried out a second time.

Bounded in entries and in time; held in memory (the reboot of the gateway is the one request
remembered across a restart, by the agent's state file).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from edged.model import DeviceIdentity

REMEMBER_SECONDS = 900.0
REMEMBER_ENTRIES = 4096
KEEP_ANSWER_BYTES = 4096
"""Answers up to this size are kept verbatim; a repeat of a larger one gets its code only."""


@dataclass(slots=True)
class Seen:
    """One remembered request: ``payload`` is None while it runs."""

    at: float
    rc: int | None = None
    payload: bytes | None = None

    @property
    def running(self) -> bool:
        """No answer yet."""
        return self.rc is None


class AnswerBook:
    """The requests seen per device in the last ``seconds``, with their answers."""

    def __init__(
        self,
        *,
        seconds: float = REMEMBER_SECONDS,
        entries: int = REMEMBER_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.seconds = seconds
        self.entries = entries
        self.clock = clock
        self._seen: OrderedDict[tuple[DeviceIdentity, str], Seen] = OrderedDict()

    def __len__(self) -> int:
        return len(self._seen)

    def check_in(self, device: DeviceIdentity, req_id: str) -> Seen | None:
        """The earlier entry for this request, or None (then it is recorded as running)."""
        self._expire()
        key = (device, req_id)
        earlier = self._seen.get(key)
        if earlier is not None:
            return earlier
        self._seen[key] = Seen(self.clock())
        return None

    def answered(self, device: DeviceIdentity, req_id: str, rc: int, payload: bytes) -> None:
        """Record the answer a request got (the first one only)."""
        self._expire()
        entry = self._seen.get((device, req_id))
        if entry is None:
            entry = self._seen[(device, req_id)] = Seen(self.clock())
        if entry.rc is None:
            entry.rc = rc
            entry.payload = payload if len(payload) <= KEEP_ANSWER_BYTES else None

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
