"""Diagnostics (PROTOCOL.md 4.7): a device's link problems as iotdm-1 error codes and logs.

What is sent for a change of :class:`~edged.model.DeviceState`:

* OFFLINE or DOWN (a problem): ``add/diag/errorCodes`` with the problem's code, then
  ``add/diag/log`` with ``"<state>: <detail>"`` (escaped, at most :data:`MAX_MESSAGE`
  characters), severity 1 (warning) for OFFLINE and 2 (error) for DOWN, stamped with the time
  of the change. When the platform was told of a different problem before, the codes are
  cleared first (``clear/diag/errorCodes``), so its list holds the current problem only.
* ONLINE after a problem: ``clear/diag/errorCodes``, then ``add/diag/log`` "recovered",
  severity 0. ONLINE with no problem told, and STARTING at any time, send nothing.

Error codes (:data:`ERROR_CODES`): 1 offline, 2 down, unless the caller gives the adapter's
own code (e.g. the BLE adapter's 5101-5104, see adapters/ble/errors.py). Two problems are the
same when state and code are; a new detail alone sends nothing.

Rate limit: at most one batch per device per ``min_interval`` seconds. Changes in between are
coalesced: when the interval has passed only the latest state is compared with what the
platform was last told, and nothing is sent if they agree (a device that flaps and ends where
it started sends nothing more). The platform is assumed to know of no problem at first.
Memory: one small record per device the tracker was told about (:meth:`DiagTracker.forget`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from edged.codec import iso_time
from edged.model import DeviceIdentity, DeviceState, JSONValue
from edged.text import safe

ADD_ERROR_CODE = "add/diag/errorCodes"
CLEAR_ERROR_CODES = "clear/diag/errorCodes"
ADD_LOG = "add/diag/log"

ERROR_OFFLINE = 1
"""Configured and expected, but not answering or not heard."""
ERROR_DOWN = 2
"""Its adapter failed and is being restarted with backoff."""
ERROR_CODES = {DeviceState.OFFLINE: ERROR_OFFLINE, DeviceState.DOWN: ERROR_DOWN}

SEVERITY_INFO = 0
SEVERITY_WARNING = 1
SEVERITY_ERROR = 2
_SEVERITY = {DeviceState.OFFLINE: SEVERITY_WARNING, DeviceState.DOWN: SEVERITY_ERROR}

MAX_MESSAGE = 1024
"""Characters of a log message (the detail is escaped and cut to fit)."""

DiagMessage = tuple[DeviceIdentity, str, dict[str, JSONValue]]
"""A message to send: the device, the topic suffix and the ``d`` body (empty: no ``d``)."""

_Problem = tuple[DeviceState, int]


@dataclass(slots=True)
class _Change:
    state: DeviceState
    detail: str
    problem: _Problem | None
    at: float  # wall clock, for the log's timestamp


@dataclass(slots=True)
class _Device:
    told: _Problem | None = None  # the problem the platform was last told of
    pending: _Change | None = None
    sent_at: float | None = None  # clock time of the last batch


class DiagTracker:
    """Turns device state changes into rate-limited diagnostics batches (see the module doc).

    Call :meth:`state_changed` on every change, then :meth:`take_due` now and again at
    :meth:`next_due`. ``clock`` (monotonic seconds) rate-limits; ``wall`` (epoch seconds)
    stamps logs. Not thread-safe: owned by the event loop.
    """

    def __init__(
        self,
        *,
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.min_interval = min_interval
        self._clock = clock
        self._wall = wall
        self._devices: dict[DeviceIdentity, _Device] = {}

    def state_changed(
        self,
        device: DeviceIdentity,
        state: DeviceState,
        detail: str,
        *,
        error_code: int | None = None,
    ) -> None:
        """Record ``device``'s new state; ``error_code`` replaces the table's code."""
        if state is DeviceState.STARTING:
            return
        problem: _Problem | None = None
        if state in ERROR_CODES:
            problem = (state, ERROR_CODES[state] if error_code is None else error_code)
        record = self._devices.setdefault(device, _Device())
        record.pending = _Change(state, detail, problem, self._wall())

    def take_due(self) -> list[DiagMessage]:
        """The messages to send now, in order, for every device whose batch is due."""
        now = self._clock()
        messages: list[DiagMessage] = []
        for device, record in self._devices.items():
            change = record.pending
            if change is None:
                continue
            if change.problem == record.told:
                record.pending = None  # back where the platform believes it is
                continue
            if record.sent_at is not None and now < record.sent_at + self.min_interval:
                continue
            messages.extend(_batch(device, record.told, change))
            record.told = change.problem
            record.pending = None
            record.sent_at = now
        return messages

    def next_due(self) -> float | None:
        """The clock time from which :meth:`take_due` has something; None when nothing waits."""
        times = [
            self._clock() if record.sent_at is None else record.sent_at + self.min_interval
            for record in self._devices.values()
            if record.pending is not None and record.pending.problem != record.told
        ]
        return min(times, default=None)

    def forget(self, device: DeviceIdentity) -> None:
        """Drop what is known of ``device`` (no longer managed)."""
        self._devices.pop(device, None)


def _batch(device: DeviceIdentity, told: _Problem | None, change: _Change) -> list[DiagMessage]:
    stamp = iso_time(change.at)
    if change.problem is None:
        text = "recovered" + (f": {change.detail}" if change.detail else "")
        return [
            (device, CLEAR_ERROR_CODES, {}),
            (device, ADD_LOG, _log(text, stamp, SEVERITY_INFO)),
        ]
    state, code = change.problem
    messages: list[DiagMessage] = []
    if told is not None:
        messages.append((device, CLEAR_ERROR_CODES, {}))
    text = f"{state}: {change.detail}" if change.detail else str(state)
    messages.append((device, ADD_ERROR_CODE, {"errorCode": code}))
    messages.append((device, ADD_LOG, _log(text, stamp, _SEVERITY[state])))
    return messages


def _log(text: str, stamp: str, severity: int) -> dict[str, JSONValue]:
    # safe() adds a "...(+N chars)" note past its limit; leave room for it within MAX_MESSAGE.
    message = safe(text, MAX_MESSAGE - 24)[:MAX_MESSAGE]
    return {"message": message, "timestamp": stamp, "severity": severity}
