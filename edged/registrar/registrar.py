"""The registrar: when each attached device's messages may go, so none is lost to registration.

The platform registers a device the first time the gateway publishes for it, keeps at most 128
registrations pending per gateway, and after a failed one drops the device's messages for an
undocumented while (PROTOCOL.md section 3). The registrar is the outbox's ``is_held`` gate and
wraps the delivery of each device's first message (its "probe"): while a device is pending only
the probe is out, and it is confirmed (kept in the outbox until then) once it was acknowledged
and ``confirm_after`` passed with no notify refusing the device. The rules, per kind of refusal,
are in docs/registration.md.

Everything runs on the event loop; timers are ``loop.call_later`` (or a test's ``schedule``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any, TypeAlias

from edged.config.registration import RegistrationConfig
from edged.model import DeviceIdentity
from edged.registrar.notify import LIMIT_KINDS, PERMANENT_KINDS, Kind, Malformed, Notify, parse
from edged.registrar.problems import NotifyProblems
from edged.registrar.state import Cancellable, Record, State, hold_for
from edged.statefile import StateFile
from edged.text import safe
from edged.uplink import UplinkClosedError

log = logging.getLogger("edged.registrar")
notify_log = logging.getLogger("edged.notify")

FILE_VERSION = 1
ADMISSION_LEASE = 60.0
"""An admitted device whose probe has not gone out this long (its messages were dropped or
expired, its adapter stopped) gives its pending slot back and becomes unknown again."""
SAVE_DELAY = 1.0
"""Registrations within this long are saved as one write (a lost save only means a re-probe)."""
MAX_UNCONFIGURED = 1024
"""Devices tracked that are not in the configuration (should be none); others stay held."""
MAX_LISTED = 20
"""Devices listed in :meth:`Registrar.summary`."""

Schedule: TypeAlias = Callable[[float, Callable[[], None]], Cancellable]

_ORDER = {
    State.PERMANENT: 0,
    State.FAILED: 1,
    State.PENDING: 2,
    State.WAITING: 3,
    State.UNKNOWN: 4,
    State.REGISTERED: 5,
}


class RegistrationRefused(Exception):
    """The platform refused to register the device a message was sent for (a notify said so).

    Set on the future :meth:`Registrar.track` returned for the device's probe: the outbox keeps
    the message and sends it again once the device's backoff passed.
    """

    def __init__(self, device: str, kind: Kind, message: str) -> None:
        super().__init__(f"registration of {safe(device)} refused ({kind}): {message}")
        self.device = device
        self.kind = kind


def _call_later(delay: float, callback: Callable[[], None]) -> Cancellable:
    return asyncio.get_running_loop().call_later(delay, callback)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # marks it retrieved: nobody else looks at this delivery


class Registrar:
    """Registration state of the attached devices; the outbox's ``is_held`` gate.

    Args:
        gateway: the gateway itself, never held.
        devices: the configured attached devices.
        settings: the ``registration:`` section.
        state_file: where the registered set is kept across restarts.
        wake: called whenever a held device may go now (the outbox's ``wake``).
        clock: monotonic seconds (must match ``schedule``'s time base).
        wall: epoch seconds, for the retry times shown in status.
        rng: the source of the backoff's jitter.
        schedule: ``(delay, callback) -> handle with cancel()``; default ``loop.call_later``.
        admission_lease: see :data:`ADMISSION_LEASE`.
    """

    def __init__(
        self,
        gateway: DeviceIdentity,
        devices: Iterable[DeviceIdentity],
        settings: RegistrationConfig,
        state_file: StateFile,
        *,
        wake: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        schedule: Schedule = _call_later,
        admission_lease: float = ADMISSION_LEASE,
    ) -> None:
        self.settings = settings
        self.state_file = state_file
        self.counters: Counter[str] = Counter()
        """Notify messages per :class:`Kind` and per :class:`Malformed` reason, plus
        ``no_device``, ``unknown_device``, ``gateway``, ``refused``, ``registered``."""
        self.problems = NotifyProblems(notify_log)
        self._gateway = str(gateway)
        self._wake = wake
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()
        self._schedule = schedule
        self._lease = admission_lease
        self._records: dict[str, Record] = {}
        for device in devices:
            key = str(device)
            if key != self._gateway:
                self._records[key] = Record(key, configured=True)
        self._free: set[str] = {self._gateway}
        """Keys never held: the gateway and the registered devices (``is_held``'s fast path)."""
        self._waiting: OrderedDict[str, None] = OrderedDict()
        self._pending = 0
        self._limited = False
        self._limit_until = 0.0
        self._limit_timer: Cancellable | None = None
        self._save_timer: Cancellable | None = None
        self._offered: str | None = None
        """The pending device whose message the outbox took last, when :meth:`is_held` was not
        called since: the forwarder may be waiting for the uplink to take that probe, so the
        device keeps its slot. (One forwarder takes one message at a time and the outbox calls
        ``is_held`` only while looking for the next one.)"""
        self._unconfigured = 0
        self._closed = False

    # -- start and stop ------------------------------------------------------------------------

    def load(self) -> None:
        """Read the registered set kept by the last run (once, at start; blocks briefly)."""
        document = self.state_file.load()
        entries = document.get("registered", [])
        if not document:
            return
        if document.get("version") != FILE_VERSION or not isinstance(entries, list):
            log.warning(
                "%s: unknown format (version %s); every device will be registered again",
                self.state_file.path,
                safe(document.get("version"), 20),
            )
            return
        known = 0
        for key in entries:
            record = self._records.get(key) if isinstance(key, str) else None
            if record is not None and record.state is State.UNKNOWN:
                record.state = State.REGISTERED
                self._free.add(key)
                known += 1
        log.info(
            "%d device(s) known as registered; %d entry(ies) in %s no longer configured",
            known,
            len(entries) - known,
            self.state_file.path,
        )

    def set_devices(self, devices: Iterable[DeviceIdentity]) -> None:
        """Replace the configured devices (a reload).

        New devices start unknown (or keep what is known of them); a removed device keeps its
        record, marked not configured, so that its messages still in the outbox are delivered
        as before (and it leaves registered.json at the next save).
        """
        wanted = {str(device) for device in devices} - {self._gateway}
        for key, record in self._records.items():
            record.configured = key in wanted
        for key in wanted - self._records.keys():
            self._records[key] = Record(key, configured=True)
        self._save_soon()

    def close(self) -> None:
        """Stop all timers; unconfirmed probes get :class:`UplinkClosedError` (kept, resent).

        The last registrations are handed to the state file: await its ``flush()`` afterwards.
        """
        if self._closed:
            return
        self._closed = True
        for record in self._records.values():
            record.cancel_timer()
            probe, record.probe = record.probe, None
            if probe is not None and not probe.done():
                probe.set_exception(UplinkClosedError("registration not confirmed at shutdown"))
        if self._limit_timer is not None:
            self._limit_timer.cancel()
            self._limit_timer = None
        if self._save_timer is not None:
            self._save_timer.cancel()
            self._save_timer = None
            self._save()

    # -- the outbox's side ---------------------------------------------------------------------

    def is_held(self, device_key: str) -> bool:
        """Whether the outbox must skip ``device_key``'s messages for now (called very often).

        Admits an unknown device (makes it pending) when nobody waits, a slot is free and no
        limit backoff runs; otherwise it joins the waiting queue.
        """
        # The outbox asks only between takes: any earlier offer is settled (see _offered).
        self._offered = None
        if device_key in self._free:
            return False
        record = self._records.get(device_key)
        if record is None:
            record = self._unconfigured_device(device_key)
            if record is None:
                return True
        state = record.state
        if state is State.PENDING:
            if record.probe is not None or self._limited:
                return True
            self._offered = device_key
            return False
        if state is State.UNKNOWN:
            if (
                not self._waiting
                and self._pending < self.settings.max_pending
                and not self._limited
            ):
                self._make_pending(record)
                self._offered = device_key
                return False
            record.state = State.WAITING
            self._waiting[device_key] = None
        return True

    def track(self, device_key: str, delivery: asyncio.Future[None]) -> asyncio.Future[None]:
        """The future the outbox should wait on for a message just handed to the uplink.

        ``delivery`` itself for the gateway and registered devices. For a pending device's
        probe, a future that settles once the registration is confirmed (None), refused
        (:class:`RegistrationRefused`) or the delivery failed (the delivery's error).
        """
        if device_key in self._free:
            return delivery
        record = self._records.get(device_key)
        if record is None:
            return delivery
        if record.state in (State.UNKNOWN, State.WAITING):
            # It went out anyway (its lease ran out while the uplink was down): for the
            # platform it is a registration request, so it counts as one.
            self._waiting.pop(device_key, None)
            self._make_pending(record)
            log.debug("%s: probe sent after its slot was given back", safe(device_key))
        loop = delivery.get_loop()
        if record.state is State.PENDING:
            if record.probe is not None:
                return delivery  # is_held never lets a second message out while one is
            if self._offered == device_key:
                self._offered = None
            record.cancel_timer()
            probe: asyncio.Future[None] = loop.create_future()
            record.probe = probe
            delivery.add_done_callback(partial(self._delivered, record, probe))
            return probe
        # Refused between is_held and now (failed or permanent): keep it for later.
        delivery.add_done_callback(_retrieve)
        refused: asyncio.Future[None] = loop.create_future()
        refused.set_exception(
            RegistrationRefused(device_key, record.kind or Kind.UNKNOWN, record.detail)
        )
        return refused

    def _delivered(
        self, record: Record, probe: asyncio.Future[None], delivery: asyncio.Future[None]
    ) -> None:
        if probe.done():  # refused (or shut down) before the broker answered
            _retrieve(delivery)
            return
        error = None if delivery.cancelled() else delivery.exception()
        if error is not None or delivery.cancelled():
            record.probe = None  # still pending: the outbox sends it again
            self._start_lease(record)
            if error is None:
                probe.cancel()
            else:
                probe.set_exception(error)
            return
        record.timer = self._later(self.settings.confirm_after, partial(self._confirm, record))

    def _confirm(self, record: Record) -> None:
        record.timer = None
        probe = record.probe
        if record.state is not State.PENDING or probe is None or probe.done():
            return
        record.probe = None
        self._pending -= 1
        record.state = State.REGISTERED
        record.attempts = 0
        self._free.add(record.key)
        self.counters["registered"] += 1
        log.info("%s registered", safe(record.key))
        self._save_soon()
        probe.set_result(None)
        self._admit()
        self._wake()

    # -- admission -----------------------------------------------------------------------------

    def _make_pending(self, record: Record) -> None:
        record.state = State.PENDING
        self._pending += 1
        self._start_lease(record)

    def _start_lease(self, record: Record) -> None:
        record.cancel_timer()
        record.timer = self._later(self._lease, partial(self._lease_over, record))

    def _lease_over(self, record: Record) -> None:
        record.timer = None
        if record.state is not State.PENDING or record.probe is not None:
            return
        if self._offered == record.key or self._limited:
            self._start_lease(record)
            return
        self._pending -= 1
        record.state = State.UNKNOWN
        self._admit()

    def _admit(self) -> None:
        """Admit waiting devices in order while slots are free and no limit backoff runs."""
        admitted = False
        while self._waiting and self._pending < self.settings.max_pending and not self._limited:
            key, _ = self._waiting.popitem(last=False)
            self._make_pending(self._records[key])
            admitted = True
        if admitted:
            self._wake()

    def _unconfigured_device(self, key: str) -> Record | None:
        if self._unconfigured >= MAX_UNCONFIGURED:
            self.problems.once(
                "unconfigured:full",
                logging.ERROR,
                "messages for more than %d devices that are not configured: the others are held",
                MAX_UNCONFIGURED,
            )
            return None
        self._unconfigured += 1
        record = self._records[key] = Record(key, configured=False)
        log.warning("messages for %s, which is not configured", safe(key))
        return record

    # -- notify --------------------------------------------------------------------------------

    def handle_notify(self, payload: bytes) -> None:
        """Take one message from the gateway's notify topic (any bytes; never raises)."""
        self.problems.total += 1
        try:
            self._handle(payload)
        except Exception:  # a bug here must not stop incoming messages
            self.counters["errors"] += 1
            if self.counters["errors"] == 1:
                log.exception("notify handling failed (further failures counted as errors)")

    def _handle(self, payload: bytes) -> None:
        notify = parse(payload)
        if isinstance(notify, Malformed):
            self.counters[notify] += 1
            self.problems.count("?")
            self.problems.once(
                ("malformed", notify),
                logging.WARNING,
                "ignored a platform notify message (%s, %d bytes); repeats are counted in status",
                notify.value,
                len(payload),
            )
            return
        kind = notify.kind
        self.counters[kind] += 1
        self.problems.count(notify.where)
        if kind is Kind.TOPIC:
            self.problems.once(
                ("topic", notify.topic),
                logging.ERROR,
                "platform refused a %s on topic %s: %s (RC %s) - a bug or a missing permission;"
                " repeats are counted in status",
                notify.request,
                notify.topic,
                notify.message,
                notify.rc,
            )
            return
        if notify.device is None:
            self.counters["no_device"] += 1
            self.problems.once(
                ("no_device", kind, notify.message),
                logging.ERROR,
                "platform refused a %s on an invalid topic %s: %s (RC %s)",
                notify.request,
                notify.topic,
                notify.message,
                notify.rc,
            )
            return
        if notify.device == self._gateway:
            self.counters["gateway"] += 1
            self.problems.once(
                ("gateway", kind),
                logging.ERROR,
                "platform refused a %s for the gateway itself: %s (RC %s, topic %s)",
                notify.request,
                notify.message,
                notify.rc,
                notify.topic,
            )
            return
        record = self._records.get(notify.device)
        if record is None:
            self.counters["unknown_device"] += 1
            self.problems.once(
                ("unknown_device", kind),
                logging.WARNING,
                "ignored a notify about %s, which is not attached to this gateway: %s",
                notify.where,
                notify.message,
            )
            return
        self._refuse(record, notify)

    def _refuse(self, record: Record, notify: Notify) -> None:
        kind = notify.kind
        previous = record.state
        record.kind, record.detail = kind, notify.message
        record.refusals += 1
        permanent = kind in PERMANENT_KINDS
        self.problems.once(
            ("device", record.key, kind, notify.message if kind is Kind.UNKNOWN else ""),
            logging.ERROR if permanent else logging.WARNING,
            "platform refused to register %s: %s (RC %s, %s)",
            notify.where,
            notify.message,
            notify.rc,
            "held until its configuration changes"
            if permanent
            else "an unknown message: retried with backoff"
            if kind is Kind.UNKNOWN
            else "retried later",
        )
        if previous is State.PERMANENT or (previous is State.FAILED and not permanent):
            return  # already held: a late notify about a message sent before
        self.counters["refused"] += 1
        delay = hold_for(kind, record.attempts, self.settings, self._rng)
        if not permanent and kind not in LIMIT_KINDS:
            record.attempts += 1
        if previous is State.PENDING:
            self._pending -= 1
        elif previous is State.WAITING:
            del self._waiting[record.key]
        elif previous is State.REGISTERED:
            self._free.discard(record.key)
            self._save_soon()
        record.cancel_timer()
        probe, record.probe = record.probe, None
        if delay is None:
            record.state = State.PERMANENT
        else:
            record.state = State.FAILED
            record.until = self._clock() + delay
            record.timer = self._later(delay, partial(self._release, record))
        if probe is not None and not probe.done():
            probe.set_exception(RegistrationRefused(record.key, kind, notify.message))
        if kind in LIMIT_KINDS and delay is not None:
            self._start_limit(delay)
        self._admit()

    def _release(self, record: Record) -> None:
        """A failed device's backoff passed: it re-enters through the cap like a new device."""
        record.timer = None
        if record.state is State.FAILED:
            record.state = State.UNKNOWN
            self._wake()

    def _start_limit(self, delay: float) -> None:
        until = self._clock() + delay
        self._limited = True
        if until > self._limit_until:
            self._limit_until = until
            if self._limit_timer is not None:
                self._limit_timer.cancel()
            self._limit_timer = self._later(delay, self._limit_over)

    def _limit_over(self) -> None:
        self._limit_timer = None
        self._limited = False
        self._admit()
        self._wake()  # admitted devices that were held by the limit may go

    # -- persistence ---------------------------------------------------------------------------

    def _save_soon(self) -> None:
        if self._save_timer is None:
            self._save_timer = self._later(SAVE_DELAY, self._save_due)

    def _save_due(self) -> None:
        self._save_timer = None
        self._save()

    def _save(self) -> None:
        registered = sorted(
            key
            for key in self._free
            if (record := self._records.get(key)) is not None and record.configured
        )
        self.state_file.save({"version": FILE_VERSION, "registered": registered})

    def _later(self, delay: float, callback: Callable[[], None]) -> Cancellable | None:
        return None if self._closed else self._schedule(delay, callback)

    # -- status --------------------------------------------------------------------------------

    @property
    def notify_total(self) -> int:
        """Notify messages received."""
        return self.problems.total

    @property
    def limited_for(self) -> float:
        """Seconds the limit backoff still holds new devices (0 when none runs)."""
        return max(0.0, self._limit_until - self._clock()) if self._limited else 0.0

    def counts(self) -> dict[str, int]:
        """Devices in each state (configured and any unconfigured ones seen)."""
        counts = Counter(record.state for record in self._records.values())
        return {state.value: counts.get(state, 0) for state in State}

    def device_states(self, limit: int, *, registered: bool = True) -> list[dict[str, Any]]:
        """Up to ``limit`` devices, the most troubled first: state, last refusal, next retry."""
        records = sorted(
            (r for r in self._records.values() if registered or r.state is not State.REGISTERED),
            key=lambda record: _ORDER[record.state],
        )[:limit]
        now = self._clock()
        listed: list[dict[str, Any]] = []
        for record in records:
            entry: dict[str, Any] = {"device": safe(record.key), "state": record.state.value}
            if record.detail:
                entry["detail"] = record.detail
            if record.state is State.FAILED:
                retry_in = max(0.0, record.until - now)
                entry["retry_in"] = round(retry_in, 1)
                entry["retry_at"] = round(self._wall() + retry_in)
            elif record.state in (State.WAITING, State.PENDING) and self._limited:
                entry["retry_in"] = round(self.limited_for, 1)
            listed.append(entry)
        return listed

    def summary(self) -> dict[str, Any]:
        """For the status event (bounded): counts, limit backoff, refusals, troubled devices."""
        return {
            "counts": self.counts(),
            "limitedFor": round(self.limited_for, 1),
            "notify": self.problems.total,
            "byKind": dict(sorted(self.counters.items())),
            "devices": self.device_states(MAX_LISTED, registered=False),
        }
