"""Manage, renew and unmanage: each managed device's standing with the platform.

On every (re)connect :class:`Lifecycle` sends ``mgmt/manage`` for the gateway and each managed
attached device, with a fresh reqId, and waits up to ``response_timeout`` for the platform's
``response``:

* rc 200: managed. A renewal is due at ``lifetime - margin`` after the manage was sent, where
  the margin is ``max(60 s, 10 %)`` of the lifetime but at most half of it (so a short test
  lifetime still renews in time); lifetime 0 never expires and is never renewed.
* another rc: logged with its code (once per code and device) and retried after a jittered,
  growing delay; no answer in time: retried the same way.

Devices managed before but no longer wanted get one ``mgmt/unmanage`` per connect until the
platform acknowledges it (200, or 404: it no longer knows the device).

:class:`Awaiting` matches the platform's responses to all of our requests by reqId; entries
expire after ``response_timeout`` and their number is bounded.
"""

from __future__ import annotations

import enum
import logging
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edged.backoff import Backoff
from edged.dm import codes
from edged.model import DeviceIdentity
from edged.text import safe

log = logging.getLogger(__name__)

RETRY_INITIAL = 1.0
RETRY_MAXIMUM = 300.0
MAX_AWAITING = 4096


def new_req_id() -> str:
    """A unique reqId for a request of ours (PROTOCOL.md 4.3: UUID4 as the SDKs do)."""
    return str(uuid.uuid4())


def renewal_delay(lifetime: float) -> float | None:
    """Seconds after a manage when the next one is due; None for lifetime 0 (never)."""
    if lifetime <= 0:
        return None
    return lifetime - min(max(60.0, 0.1 * lifetime), 0.5 * lifetime)


OnAnswer = Callable[[int | None, str | None], None]
"""Called with the platform's rc and message, or ``(None, None)`` when none came in time."""


@dataclass(slots=True)
class _Waiting:
    device: DeviceIdentity
    suffix: str
    deadline: float
    on_answer: OnAnswer


class Awaiting:
    """Our requests waiting for the platform's ``response``, by reqId."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._waiting: OrderedDict[str, _Waiting] = OrderedDict()

    def __len__(self) -> int:
        return len(self._waiting)

    def expect(
        self, req_id: str, device: DeviceIdentity, suffix: str, timeout: float, on: OnAnswer
    ) -> None:
        """Wait for the response to ``req_id`` (beyond the cap the oldest wait is given up)."""
        if len(self._waiting) >= MAX_AWAITING:
            _, oldest = self._waiting.popitem(last=False)
            oldest.on_answer(None, None)
        self._waiting[req_id] = _Waiting(device, suffix, self.clock() + timeout, on)

    def answer(self, device: DeviceIdentity, req_id: str, rc: int, message: str | None) -> bool:
        """Deliver a response; False when no request of ours for that device has this reqId."""
        waiting = self._waiting.get(req_id)
        if waiting is None or waiting.device != device:
            return False
        del self._waiting[req_id]
        waiting.on_answer(rc, message)
        return True

    def drop(self, req_id: str | None) -> None:
        """Stop waiting for a response (a newer request replaced it)."""
        if req_id is not None:
            self._waiting.pop(req_id, None)

    def expire(self) -> None:
        """Tell the requests whose time is up that no response came."""
        now = self.clock()
        late = [key for key, w in self._waiting.items() if w.deadline <= now]
        for key in late:
            self._waiting.pop(key).on_answer(None, None)

    def next_due(self) -> float | None:
        """When the earliest wait ends."""
        return min((w.deadline for w in self._waiting.values()), default=None)


class Status(enum.StrEnum):
    """Where a device stands with the platform."""

    IDLE = "idle"  # nothing sent since start (not connected yet)
    MANAGING = "managing"  # manage sent, waiting for the response
    MANAGED = "managed"
    RETRYING = "retrying"  # refused or unanswered; manage again at `due`
    UNMANAGING = "unmanaging"


@dataclass
class Standing:
    """One device's manage state, counters included (shown by ``edged status``)."""

    device: DeviceIdentity
    lifetime: float
    status: Status = Status.IDLE
    req_id: str | None = None
    due: float | None = None
    expires: float | None = None
    last_rc: int | None = None
    manages: int = 0
    refusals: int = 0
    timeouts: int = 0
    backoff: Backoff = field(
        default_factory=lambda: Backoff(initial=RETRY_INITIAL, maximum=RETRY_MAXIMUM)
    )
    logged_rcs: set[int] = field(default_factory=set)


SendRequest = Callable[[DeviceIdentity, str, dict[str, Any] | None, str, OnAnswer], None]
"""Send ``{"d": d, "reqId": req_id}`` on a suffix and report the platform's answer."""


class Lifecycle:
    """Manage and unmanage for every device the agent manages."""

    def __init__(
        self,
        send: SendRequest,
        *,
        clock: Callable[[], float],
        on_managed: Callable[[DeviceIdentity], None],
        on_unmanaged: Callable[[DeviceIdentity], None],
    ) -> None:
        self._send = send
        self.clock = clock
        self._on_managed = on_managed
        self._on_unmanaged = on_unmanaged
        self.standings: dict[DeviceIdentity, Standing] = {}
        self._bodies: dict[DeviceIdentity, Callable[[], dict[str, Any]]] = {}
        self.leaving: set[DeviceIdentity] = set()
        self._online = False

    def want(
        self, device: DeviceIdentity, lifetime: float, body: Callable[[], dict[str, Any]]
    ) -> None:
        """Keep ``device`` managed; ``body()`` builds the manage request's ``d``."""
        self.standings[device] = Standing(device, lifetime)
        self._bodies[device] = body

    def let_go(self, devices: set[DeviceIdentity]) -> None:
        """Unmanage these devices (managed before, no longer wanted) at each connect until done."""
        self.leaving = set(devices) - set(self.standings)

    def drop(self, device: DeviceIdentity) -> None:
        """Stop managing ``device`` now (a reload removed it): unmanage it at once and at every
        connect until the platform confirms it."""
        self.standings.pop(device, None)
        self._bodies.pop(device, None)
        self.leaving.add(device)
        self._send(device, "mgmt/unmanage", None, new_req_id(), self._unmanage_answer(device))

    def connected(self) -> None:
        """The uplink (re)connected: manage everything again, unmanage the leavers."""
        self._online = True
        for standing in self.standings.values():
            standing.backoff.reset()
            self._manage(standing)
        for device in sorted(self.leaving):
            self._send(device, "mgmt/unmanage", None, new_req_id(), self._unmanage_answer(device))

    def tick(self) -> None:
        """Send the renewals and retries that are due."""
        if not self._online:
            return
        now = self.clock()
        for standing in self.standings.values():
            if standing.due is not None and standing.due <= now:
                self._manage(standing)

    def next_due(self) -> float | None:
        """When :meth:`tick` next has work."""
        if not self._online:
            return None
        return min((s.due for s in self.standings.values() if s.due is not None), default=None)

    def _manage(self, standing: Standing) -> None:
        if standing.status != Status.MANAGED:
            standing.status = Status.MANAGING
        standing.due = None
        standing.manages += 1
        sent_at = self.clock()
        req_id = standing.req_id = new_req_id()

        def answered(rc: int | None, message: str | None) -> None:
            if standing.req_id == req_id and self.standings.get(standing.device) is standing:
                standing.req_id = None
                self._manage_answer(standing, sent_at, rc, message)

        body = self._bodies[standing.device]()
        self._send(standing.device, "mgmt/manage", body, req_id, answered)

    def _manage_answer(
        self, standing: Standing, sent_at: float, rc: int | None, message: str | None
    ) -> None:
        standing.last_rc = rc
        if rc == codes.OK:
            first = standing.status != Status.MANAGED
            standing.status = Status.MANAGED
            standing.backoff.reset()
            standing.logged_rcs.clear()
            delay = renewal_delay(standing.lifetime)
            standing.expires = None if delay is None else sent_at + standing.lifetime
            standing.due = None if delay is None else sent_at + delay
            (log.info if first else log.debug)("%s is managed", standing.device)
            self._on_managed(standing.device)
            return
        standing.status = Status.RETRYING
        retry_in = standing.backoff.next_delay()
        standing.due = self.clock() + retry_in
        if rc is None:
            standing.timeouts += 1
            what = "no response to mgmt/manage"
        else:
            standing.refusals += 1
            what = f"mgmt/manage refused with rc {codes.describe(rc)}"
            if message:
                what += f": {safe(message)}"
        key = -1 if rc is None else rc
        level = logging.DEBUG if key in standing.logged_rcs else logging.WARNING
        standing.logged_rcs.add(key)
        log.log(level, "%s for %s; retrying in %.1f s", what, standing.device, retry_in)

    def _unmanage_answer(self, device: DeviceIdentity) -> OnAnswer:
        def answered(rc: int | None, message: str | None) -> None:
            if rc in (codes.OK, codes.NOT_FOUND):
                log.info("%s is no longer managed (unmanage rc %s)", device, rc)
                self.leaving.discard(device)
                self._on_unmanaged(device)
            else:
                log.warning(
                    "unmanage of %s: %s; tried again at the next connect",
                    device,
                    "no response" if rc is None else f"rc {codes.describe(rc)} {safe(message)}",
                )

        return answered

    def snapshot(self, wall_offset: float) -> dict[str, Any]:
        """Per device: status, lifetime, seconds to expiry (``wall_offset``: wall - clock)."""
        out: dict[str, Any] = {}
        for device, s in sorted(self.standings.items())[:100]:
            out[str(device)] = {
                "status": s.status.value,
                "lifetime": s.lifetime,
                "expires_at": None if s.expires is None else round(s.expires + wall_offset, 3),
                "last_rc": s.last_rc,
                "manages": s.manages,
                "refusals": s.refusals,
                "timeouts": s.timeouts,
            }
        for device in sorted(self.leaving)[:100]:
            out[str(device)] = {"status": Status.UNMANAGING.value}
        return out
