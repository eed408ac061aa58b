"""The device-management agent: one dispatcher for every iotdm-1 message (docs/dm.md).

:class:`DMAgent` manages the gateway and each attached device whose config has a ``manage:``
key (:mod:`edged.dm.lifecycle`), answers the platform's requests for them with the codes of
PROTOCOL.md 4.4, keeps their attributes (:mod:`edged.dm.attributes`) and reports location,
diagnostics and changes of observed attributes. Everything runs on the event loop:
:meth:`DMAgent.handle` never blocks and never raises; actions run as tasks
(:mod:`edged.dm.desk`), each owed exactly one answer within ``request_timeout``; firmware
downloads and installs run as tasks of :mod:`edged.dm.firmware.desk`, one per device.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from edged import topics
from edged.adapters.base import Location, LocationBoard
from edged.config.management import DeviceManageConfig, ManagedConfig
from edged.dm import codes
from edged.dm import requests as rq
from edged.dm.actions import ActionRunner, Execute
from edged.dm.answers import AnswerBook
from edged.dm.attributes import DMState, affected
from edged.dm.desk import ActionDesk
from edged.dm.deviceinfo import device_info, gateway_device_info
from edged.dm.diag import DiagTracker
from edged.dm.firmware.desk import FirmwareDesk
from edged.dm.firmware.state import Refused
from edged.dm.lifecycle import Awaiting, Lifecycle, OnAnswer, Status
from edged.dm.location import LocationTracker
from edged.dm.outgoing import LogOnce, Outgoing, Send, encode
from edged.dm.targets import Target, local_values, manage_body, targets_of
from edged.model import DeviceIdentity, DeviceState
from edged.statefile import StateFile, sibling_path
from edged.text import safe

log = logging.getLogger(__name__)

MAX_WAKE = 60.0
"""The longest the timer loop sleeps without looking at its schedule."""
MIN_WAKE = 0.005


class DMAgent:
    """The iotdm-1 agent for the gateway and its managed attached devices."""

    def __init__(  # noqa: PLR0917 - the integrator's interface: six positional arguments
        self,
        gateway: DeviceIdentity,
        settings: ManagedConfig,
        devices: Mapping[DeviceIdentity, DeviceManageConfig],
        send: Send,
        execute: Execute,
        state_file: StateFile,
        *,
        version: str,
        location: LocationBoard | None = None,
        restart: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.gateway = gateway
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self.counters: Counter[str] = Counter()
        self._state_file = state_file
        self.targets = targets_of(gateway, settings, devices)
        if gateway in self.targets:
            # Blocking edge: a few small /sys and /proc reads, once, at construction.
            self._gateway_info = gateway_device_info(settings.device_info, version)
        self.state = DMState()
        self._log_once = LogOnce(log)
        self.out = Outgoing(
            send,
            answers=AnswerBook(clock=clock),
            awaiting=Awaiting(clock),
            response_timeout=settings.response_timeout,
            counters=self.counters,
            log_once=self._log_once,
        )
        self.desk = ActionDesk(
            ActionRunner(execute, gateway=gateway),
            self.out,
            max_requests=settings.max_requests,
            request_timeout=settings.request_timeout,
            counters=self.counters,
            log_once=self._log_once,
        )
        self.firmware = FirmwareDesk(
            directory=sibling_path(state_file.path, "firmware"),
            runner=self.desk.runner,
            out=self.out,
            attributes=lambda device: self.state.attributes(device),  # noqa: PLW0108 - load() replaces self.state
            is_managed=self._is_managed,
            save=self._save,
            notify=self._notify,
            version=version,
            wall=wall,
            restart=restart,
        )
        self.lifecycle = Lifecycle(
            self._request, clock=clock, on_managed=self._managed, on_unmanaged=self._unmanaged
        )
        for target in self.targets.values():
            self.lifecycle.want(target.device, target.lifetime, self._body_of(target))
        self.locations = LocationTracker(
            min_distance=settings.location_min_distance,
            min_interval=settings.location_min_interval,
            clock=clock,
            wall=wall,
        )
        self.diag = DiagTracker(min_interval=settings.diag_min_interval, clock=clock)
        self._wake = asyncio.Event()
        self._unnotified: dict[DeviceIdentity, set[str]] = {}
        self._save_later = False
        if location is not None and settings.enabled and settings.location is None:
            location.subscribe(self._on_fix)

    # -- start, persistence, the uplink ---------------------------------------------------------

    def load(self) -> None:
        """Read the persisted state (once, at start) and decide which devices to unmanage."""
        self.state = DMState.from_json(self._state_file.load())
        self.lifecycle.let_go(self.state.managed - set(self.targets))
        for target in self.targets.values():  # readable at once; notified after the manage
            self._notify(target.device, self._apply_local(target))
        self.firmware.load(self.targets.values())
        pending = self.state.pending_action
        if pending is not None:
            req_id = pending.get("reqId")
            log.info(
                "started after the gateway's %s (reqId %s); the next manage completes it",
                safe(pending.get("action")),
                safe(req_id),
            )
            if isinstance(req_id, str):  # a redelivery of that request must not act again
                payload = encode({"rc": codes.ACCEPTED, "reqId": req_id})
                self.out.answers.done(self.gateway, req_id, codes.ACCEPTED, payload)

    def _save(self) -> None:
        try:
            self._state_file.save(self.state.to_json())
        except RuntimeError:  # no event loop yet (load() at start): saved at the next chance
            self._save_later = True

    async def _remember_action(self, pending: dict[str, Any] | None) -> None:
        self.state.pending_action = None if pending is None else {**pending, "at": self.wall()}
        self._save()
        await self._state_file.flush()  # on disk before the machine may go down

    def subscriptions(self) -> list[tuple[str, int]]:
        """One filter for every device's iotdm-1 topics, at QoS 1.

        ``iotdm-1/type/+/id/+/#`` names no device, so subscribing never makes the platform
        register an attached device behind the registrar's back, and it is one subscription
        instead of one per managed device; requests for devices not managed are answered 404.
        """
        return [(topics.dm_request_filter_all(), 1)]

    def connected(self) -> None:
        """The uplink (re)connected: manage everything again and unmanage the leavers."""
        self.counters["connects"] += 1
        if self._save_later:
            self._save_later = False
            self._save()
        self.lifecycle.connected()
        self._wake.set()

    def reconfigure(self, devices: Mapping[DeviceIdentity, DeviceManageConfig]) -> None:
        """Take a reloaded config's managed attached devices (the gateway's own ``managed:``
        settings need a restart): new devices are managed, removed ones unmanaged, and a device
        whose options changed sends a fresh manage carrying them. Requests go as soon as the
        uplink is (or once was) connected, like renewals."""
        new = targets_of(self.gateway, self.settings, devices)
        for device in set(self.targets) - set(new):
            del self.targets[device]
            self.lifecycle.drop(device)
        for device, target in new.items():
            if target.is_gateway or self.targets.get(device) == target:
                continue
            self.targets[device] = target
            self.lifecycle.leaving.discard(device)
            self.lifecycle.want(device, target.lifetime, self._body_of(target))
            self.lifecycle.standings[device].due = self.clock()  # manage at the next tick
            self._notify(device, self._apply_local(target))
        self._wake.set()

    def device_state_changed(self, device: DeviceIdentity, state: DeviceState, detail: str) -> None:
        """A managed device's link state changed: diagnostics follow (rate-limited)."""
        if device in self.targets:
            self.diag.state_changed(device, state, detail)
            self._wake.set()

    # -- incoming ------------------------------------------------------------------------------

    def handle(self, topic: topics.DMTopic, payload: bytes) -> None:
        """Take one iotdm-1 message. Never raises, never blocks."""
        try:
            self._handle(topic, payload)
        except Exception:
            self.counters["internal_errors"] += 1
            log.exception("a device-management message on %s failed", safe(topic.suffix))

    def _handle(self, topic: topics.DMTopic, payload: bytes) -> None:
        if not topic.to_device:
            return
        self.counters["received"] += 1
        device = topic.device
        parsed = rq.parse(topic.suffix, payload)
        if isinstance(parsed, rq.PlatformResponse):
            self.out.platform_response(device, parsed)
            self._wake.set()  # a renewal or a retry may now be scheduled
            return
        req_id = parsed.req_id
        if req_id is None and isinstance(parsed, rq.Problem):
            self.counters["dropped"] += 1
            self._log_once(
                f"drop:{parsed.rc}",
                "ignored a DM message for %s on %s: %s (no reqId to answer)",
                device,
                safe(topic.suffix),
                parsed.message,
            )
            return
        if req_id is not None:
            earlier = self.out.answers.check_in(device, req_id)
            if earlier is not None:
                self.counters["repeats"] += 1
                log.info("%s: reqId %s seen before; not carried out again", device, safe(req_id))
                self.out.repeat(device, req_id, earlier)
                return
        target = self.targets.get(device)
        if target is None:
            self.out.answer(device, req_id, codes.NOT_FOUND, f"{device} is not a managed device")
        elif isinstance(parsed, rq.Problem):
            if parsed.rc == codes.NOT_FOUND:
                self._log_once(f"404:{topic.suffix}", "%s: %s", device, safe(parsed.message))
            self.out.answer(device, req_id, parsed.rc, parsed.message)
        else:
            self._dispatch(target, parsed)

    def _dispatch(self, target: Target, request: rq.Request) -> None:
        device, out = target.device, self.out
        self.counters[type(request).__name__.lower()] += 1
        if isinstance(request, rq.Update):
            self._update(target, request)
        elif isinstance(request, rq.Observe):
            found, missing = self.state.observe(device, request.names)
            if missing:
                message = "cannot observe: " + ", ".join(safe(n, 64) for n in missing)
                out.answer(device, request.req_id, codes.NOT_FOUND, message, {"fields": missing})
            else:
                self._save()
                out.answer(device, request.req_id, codes.OK, None, {"fields": found})
        elif isinstance(request, rq.Cancel):
            self.state.cancel(device, request.names)
            self._save()
            out.answer(device, request.req_id, codes.OK)
        elif isinstance(request, rq.Custom):
            action = target.config.custom.get(request.bundle, {}).get(request.action)
            what = f"{request.bundle}/{request.action}"
            self.desk.start(
                device,
                request.req_id,
                what,
                lambda: self.desk.act_then_answer(
                    device, request.req_id, what, action, params=request.params, success=codes.OK
                ),
            )
        elif isinstance(request, rq.FirmwareAction):
            getattr(self.firmware, request.step)(target, request.req_id)
        else:
            self.desk.device_action(target, request, self._remember_action)

    def _update(self, target: Target, request: rq.Update) -> None:
        """``device/update``: all fields applied, or none (404 unknown, 400/409 firmware)."""
        device = target.device
        unknown = [name for name, _ in request.fields if name not in rq.WRITABLE]
        if unknown:
            message = "not writable: " + ", ".join(safe(n, 64) for n in unknown)
            self.out.answer(device, request.req_id, codes.NOT_FOUND, message, {"fields": unknown})
            return
        try:
            firmware = [v for n, v in request.fields if n == "mgmt.firmware"]
            planned = self.firmware.plan_write(device, firmware)
        except Refused as exc:
            self.out.answer(device, request.req_id, exc.rc, exc.message)
            return
        self.state.update(device, [(n, v) for n, v in request.fields if n != "mgmt.firmware"])
        if planned is not None:
            self.firmware.commit_write(target, planned)
        self._save()
        self.out.answer(device, request.req_id, codes.CHANGED)

    # -- manage and reports --------------------------------------------------------------------

    def _request(
        self,
        device: DeviceIdentity,
        suffix: str,
        d: Mapping[str, Any] | None,
        req_id: str,
        on_answer: OnAnswer,
    ) -> None:
        self.out.request(device, suffix, d, req_id, on_answer)
        if suffix == "mgmt/manage" and device not in self.state.managed:
            self.state.managed.add(device)  # it may be managed from now on: unmanage if dropped
            self._save()
        self._wake.set()

    def _apply_local(self, target: Target) -> list[str]:
        """Set the config's and the system's values; the names whose value changed."""
        attributes = self.state.attributes(target.device)
        gateway = target.is_gateway
        info = self._gateway_info if gateway else device_info(target.config.device_info)
        changed = [n for n, v in local_values(target, info) if attributes.set_local(n, v)]
        if changed:
            self._save()
        return changed

    def _body_of(self, target: Target) -> Callable[[], dict[str, Any]]:
        def body() -> dict[str, Any]:
            changed = self._apply_local(target)
            self._notify(target.device, changed)
            return manage_body(target, self.state.attributes(target.device))

        return body

    def _managed(self, device: DeviceIdentity) -> None:
        pending = self.state.pending_action
        if device == self.gateway and pending is not None:
            log.info(
                "the gateway's %s (reqId %s) is complete: managed again after the restart",
                safe(pending.get("action")),
                safe(pending.get("reqId")),
            )
            self.state.pending_action = None
            self._save()
        self._notify(device, sorted(self._unnotified.pop(device, ())))
        self.firmware.managed(device)
        location = self.state.attributes(device).value("location")
        if location is not None:
            self.out.report(device, "device/update/location", location)

    def _unmanaged(self, device: DeviceIdentity) -> None:
        self.state.forget(device)
        self._save()

    def _is_managed(self, device: DeviceIdentity) -> bool:
        standing = self.lifecycle.standings.get(device)
        return standing is not None and standing.status == Status.MANAGED

    def _notify(self, device: DeviceIdentity, changed: Iterable[str]) -> None:
        if not self._is_managed(device):  # manage comes first; sent once it succeeded
            self._unnotified.setdefault(device, set()).update(changed)
            return
        attributes = self.state.attributes(device)
        fields = []
        for name in changed:
            for observed in affected(attributes.observed, name):
                fields.append({"field": observed, "value": attributes.read(observed)[1]})
        if fields:
            self.out.report(device, "notify", {"fields": fields})

    def _on_fix(self, fix: Location) -> None:
        body = self.locations.offer(fix)
        if body is not None:
            self._location_update(body)
        self._wake.set()

    def _location_update(self, body: dict[str, Any]) -> None:
        device = self.gateway
        if self.state.attributes(device).set_local("location", body):
            self._save()
            self._notify(device, ["location"])
        if self._is_managed(device):
            self.out.report(device, "device/update/location", body)

    # -- timers, shutdown, status --------------------------------------------------------------

    def tick(self) -> None:
        """Do what is due now (run() calls it; tests with a fake clock call it directly)."""
        self.out.awaiting.expire()
        self.lifecycle.tick()
        body = self.locations.due()
        if body is not None:
            self._location_update(body)
        for device, suffix, d in self.diag.take_due():
            if self._is_managed(device):
                self.out.report(device, suffix, d or None)
            else:
                self.counters["diag_skipped"] += 1

    async def run(self) -> None:
        """Renewals, retries, response timeouts, location and diagnostics, until cancelled."""
        while True:
            self._wake.clear()
            self.tick()
            due = [
                when
                for when in (
                    self.lifecycle.next_due(),
                    self.out.awaiting.next_due(),
                    self.locations.next_due(),
                    self.diag.next_due(),
                )
                if when is not None
            ]
            delay = min(due) - self.clock() if due else MAX_WAKE
            try:
                async with asyncio.timeout(max(MIN_WAKE, min(delay, MAX_WAKE))):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def close(self) -> None:
        """Cancel the requests in progress (each still gets one answer), downloads and installs
        (settled at the next start); flush the state file."""
        await self.desk.cancel_all()
        await self.firmware.close()
        self._save()
        await self._state_file.flush()

    def snapshot(self) -> dict[str, Any]:
        """Bounded status: per device standing, lifetime expiry, last rc; counters."""
        return {
            "devices": self.lifecycle.snapshot(self.wall() - self.clock()),
            "requests_running": self.desk.running,
            "awaiting_responses": len(self.out.awaiting),
            "pending_action": self.state.pending_action,
            "counters": dict(sorted(self.counters.items())[:64]),
        }
