"""Auto-registration of a gateway's attached devices, as the platform does it (PROTOCOL.md §3.1).

When a gateway first publishes for a device the platform does not know, the platform creates
it. Here that device turns *pending* when its first message arrives and *registered*
``delay`` seconds later; its messages are delivered meanwhile. The platform keeps at most 128
registrations of one gateway pending; a new device beyond that is a ``registration-cap``
violation here (the gateway should have waited), yet it is still made pending, so a test sees by
how much the cap was exceeded (:meth:`AutoRegistration.max_pending_seen`).

A registration can be made to fail (:meth:`AutoRegistration.fail_registration`). The message
that triggered the failed attempt is dropped and a notify message is sent to the gateway
(§3.2); then, for a window of time, the platform does not retry the device and drops every
further message for it, with at most one notify per second. The first message after the
window is a fresh attempt.

Pure: no I/O, no lock (the emulator guards it with its own), time from an injected monotonic
clock. Pending devices turn registered lazily, on the next call that looks at them, at exactly
their due time (so the pending history is exact whenever it is read).
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeAlias

from edged.appclient import grammar
from edged.emulator import notify
from edged.emulator.records import DroppedPublication, DropReason, SentNotify, Violation
from edged.model import DeviceIdentity

RULE_REGISTRATION_CAP = "registration-cap"
DEFAULT_MAX_PENDING = 128
"""The platform's limit of pending registrations per gateway (PROTOCOL.md §3.1)."""
NOTIFY_INTERVAL = 1.0
"""Seconds: during a failure window, at most one notify per device per this interval."""

RegistrationState: TypeAlias = Literal["unknown", "pending", "registered", "failed"]
"""``failed`` lasts as long as the failure window; after it the device is ``unknown`` again."""


@dataclass(frozen=True, slots=True)
class Admission:
    """What becomes of one message for a device: delivered (``accepted``) or dropped, and what
    the platform records and sends because of it."""

    accepted: bool
    dropped: DroppedPublication | None = None
    notify: SentNotify | None = None
    violation: Violation | None = None


_ACCEPTED = Admission(True)


@dataclass(frozen=True, slots=True)
class _Failure:
    message: str
    window: float
    rc: int | str


@dataclass(slots=True)
class _Device:
    state: RegistrationState = "unknown"
    until: float = 0.0  # pending: when it is registered; failed: when the window ends
    failure: _Failure | None = None  # the failure whose window this is
    injected: deque[_Failure] = field(default_factory=deque)  # for the next attempts
    last_notify: float = -math.inf


class AutoRegistration:
    """The platform's auto-registration of the devices attached to ``gateway``.

    Every device but the gateway itself counts as attached to it (the gateway is registered
    already: it could not have connected otherwise).

    Args:
        gateway: The gateway; notify messages go to its notify topic.
        org: Organization id, for the ``Client`` of notify messages.
        delay: Seconds from a device's first message to its registration (0: at once).
        max_pending: Pending registrations the gateway may have before a new one is a violation.
        clock: Monotonic seconds; :func:`time.monotonic` unless a test gives another.
    """

    def __init__(
        self,
        gateway: DeviceIdentity,
        *,
        org: str,
        delay: float,
        max_pending: int = DEFAULT_MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not delay >= 0:  # also refuses NaN
            raise ValueError(f"registration delay must be >= 0, not {delay!r}")
        if max_pending < 0:
            raise ValueError(f"max_pending must be >= 0, not {max_pending!r}")
        self.gateway = gateway
        self.delay = delay
        self.max_pending = max_pending
        self.clock = clock
        self._client_id = grammar.gateway_client_id(org, gateway)
        self._notify_topic = grammar.notify_topic(gateway)
        self._devices: dict[DeviceIdentity, _Device] = {}
        self._due: deque[tuple[float, DeviceIdentity]] = deque()  # pending, by due time
        self._failed: set[DeviceIdentity] = set()  # in a failure window (or just out of one)
        self._high = 0
        self._history: list[tuple[float, int]] = [(clock(), 0)]
        self.dropped: list[DroppedPublication] = []
        """Every publication dropped so far, in arrival order."""

    # -- messages --------------------------------------------------------------------------------

    def admit(self, device: DeviceIdentity, topic: str, at: float) -> Admission:
        """Decide on a message for ``device`` received on ``topic`` at ``at`` (``time.time()``,
        for the records); registers, fails or drops as the platform would."""
        if device == self.gateway:
            return _ACCEPTED
        now = self._advance()
        entry = self._devices.get(device)
        if entry is None:
            entry = self._devices[device] = _Device()
        if entry.state in ("pending", "registered"):
            return _ACCEPTED
        if entry.state == "failed" and now < entry.until:
            return self._drop(device, entry, topic, reason="failure-window", at=at, now=now)
        # a fresh attempt: the device is new, or its failure window is over
        self._failed.discard(device)
        if entry.injected:
            failure = entry.injected.popleft()
            entry.state, entry.until, entry.failure = "failed", now + failure.window, failure
            entry.last_notify = -math.inf
            self._failed.add(device)
            return self._drop(device, entry, topic, reason="registration-failed", at=at, now=now)
        return self._start(device, entry, topic, now)

    def _start(self, device: DeviceIdentity, entry: _Device, topic: str, now: float) -> Admission:
        pending = len(self._due)
        violation = None
        if pending >= self.max_pending:
            violation = Violation(
                topic,
                RULE_REGISTRATION_CAP,
                f"new device {device} while {pending} registrations of gateway {self.gateway} "
                f"are pending (the platform allows {self.max_pending})",
            )
        entry.state, entry.until, entry.failure = "pending", now + self.delay, None
        self._due.append((entry.until, device))
        self._high = max(self._high, len(self._due))
        self._history.append((now, len(self._due)))
        return Admission(True, violation=violation)

    def _drop(
        self,
        device: DeviceIdentity,
        entry: _Device,
        topic: str,
        *,
        reason: DropReason,
        at: float,
        now: float,
    ) -> Admission:
        failure = entry.failure
        assert failure is not None  # only a failed device drops messages
        dropped = DroppedPublication(device, topic, reason, failure.message, at)
        self.dropped.append(dropped)
        sent = None
        if now - entry.last_notify >= NOTIFY_INTERVAL:
            entry.last_notify = now
            body = notify.notify_body(
                topic=topic,
                client_id=self._client_id,
                message=failure.message,
                device=device,
                rc=failure.rc,
                at=at,
            )
            sent = SentNotify(self.gateway, self._notify_topic, body, at)
        return Admission(False, dropped=dropped, notify=sent)

    def _advance(self) -> float:
        """Register every pending device whose time has come; return the clock's time."""
        now = self.clock()
        due = self._due
        while due and due[0][0] <= now:
            at, device = due.popleft()
            self._devices[device].state = "registered"
            self._history.append((at, len(due)))
        return now

    # -- failure injection -----------------------------------------------------------------------

    def fail_registration(
        self,
        device: DeviceIdentity,
        message: str,
        *,
        window: float,
        times: int = 1,
        rc: int | str = notify.DEFAULT_RC,
    ) -> None:
        """Make the next ``times`` registration attempts of ``device`` fail with ``message``.

        Each failed attempt starts a window of ``window`` seconds in which the device's messages
        are dropped. Failures add up with ones injected before.

        Raises:
            ValueError: ``device`` is the gateway, or already pending or registered (it will
                never be attempted again), or ``window`` or ``times`` is negative.
        """
        if not window >= 0 or times < 0:
            raise ValueError(f"window and times must be >= 0, not {window!r}, {times!r}")
        state = self.state(device)
        if device == self.gateway or state in ("pending", "registered"):
            raise ValueError(f"{device} is {state}: no registration attempt is left to fail")
        entry = self._devices.setdefault(device, _Device())
        entry.injected.extend([_Failure(message, window, rc)] * times)

    # -- queries ---------------------------------------------------------------------------------

    def state(self, device: DeviceIdentity) -> RegistrationState:
        """Where ``device``'s registration stands now."""
        if device == self.gateway:
            return "registered"
        now = self._advance()
        entry = self._devices.get(device)
        if entry is None:
            return "unknown"
        if entry.state == "failed" and now >= entry.until:
            return "unknown"
        return entry.state

    def all_registered(self, devices: Iterable[DeviceIdentity]) -> bool:
        """True when every one of ``devices`` is registered now."""
        return all(self.state(device) == "registered" for device in devices)

    def pending_count(self, gateway: DeviceIdentity) -> int:
        """Registrations of ``gateway`` pending now."""
        self._advance()
        return len(self._due) if gateway == self.gateway else 0

    def max_pending_seen(self, gateway: DeviceIdentity) -> int:
        """The most registrations of ``gateway`` that were pending at once."""
        return self._high if gateway == self.gateway else 0

    def pending_history(self, gateway: DeviceIdentity) -> list[tuple[float, int]]:
        """``(clock time, pending count)`` at the start and after every change, in order."""
        self._advance()
        return list(self._history) if gateway == self.gateway else []

    def next_change(self) -> float | None:
        """Clock time of the next change that comes with time alone (a registration, or the end
        of a failure window), ``None`` when none is due."""
        now = self._advance()
        times = [self._devices[d].until for d in self._failed if self._devices[d].until > now]
        if self._due:
            times.append(self._due[0][0])
        return min(times, default=None)

    def clear(self, *, states: bool) -> None:
        """Forget dropped publications and the pending history (keeping the current count as its
        start, and as the high-water mark); with ``states`` also every device's registration,
        pending or failed, and the failures injected."""
        now = self._advance()
        self.dropped.clear()
        if states:
            self._devices.clear()
            self._due.clear()
            self._failed.clear()
        self._high = len(self._due)
        self._history = [(now, len(self._due))]
