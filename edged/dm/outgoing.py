"""Everything the agent sends: answers to the platform's requests and requests of its own.

:class:`Outgoing` publishes on ``iotdevice-1/type/T/id/D/<suffix>`` through the agent's ``send``
(queued durably, QoS 1). An answer goes out once per ``(device, reqId)`` (the
:class:`~edged.dm.answers.AnswerBook` records it for repeats); a request of ours is registered
in :class:`~edged.dm.lifecycle.Awaiting` so the platform's response reaches its handler.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from edged import codec, topics
from edged.dm import codes
from edged.dm.answers import AnswerBook, Seen
from edged.dm.lifecycle import Awaiting, OnAnswer, new_req_id
from edged.dm.requests import PlatformResponse
from edged.model import DeviceIdentity
from edged.text import safe

log = logging.getLogger(__name__)

Send = Callable[[DeviceIdentity, str, bytes], None]
"""``(device, topic, payload)``: queued durably, QoS 1, on the priority lane."""

MAX_LOGGED_KEYS = 1024


def encode(body: Mapping[str, Any]) -> bytes:
    """Compact JSON in a buffer of its own size (as :func:`edged.codec.encode_event`)."""
    return bytes(memoryview(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)))


class LogOnce:
    """Warn the first time something happens, then only at debug level."""

    def __init__(self, logger: logging.Logger) -> None:
        self._log = logger
        self._seen: set[str] = set()

    def __call__(self, key: str, message: str, *args: object) -> None:
        level = logging.DEBUG if key in self._seen else logging.WARNING
        if len(self._seen) < MAX_LOGGED_KEYS:
            self._seen.add(key)
        self._log.log(level, message, *args)


class Outgoing:
    """Answers and requests of the agent, with the counters shown in its snapshot."""

    def __init__(
        self,
        send: Send,
        *,
        answers: AnswerBook,
        awaiting: Awaiting,
        response_timeout: float,
        counters: Counter[str],
        log_once: LogOnce,
    ) -> None:
        self._send = send
        self.answers = answers
        self.awaiting = awaiting
        self.response_timeout = response_timeout
        self.counters = counters
        self._log_once = log_once

    def publish(self, device: DeviceIdentity, suffix: str, payload: bytes) -> None:
        """Send one DM message for ``device``."""
        self._send(device, topics.dm_device_topic(device, suffix), payload)

    def answer(
        self,
        device: DeviceIdentity,
        req_id: str | None,
        rc: int,
        message: str | None = None,
        d: Mapping[str, Any] | None = None,
    ) -> None:
        """Answer a request once: a second answer for the same reqId is left out."""
        if req_id is None:
            return
        entry = self.answers.check_in(device, req_id)
        if entry is not None and not entry.running:
            return
        payload = self.send_answer(device, req_id, rc, message, d)
        self.answers.done(device, req_id, rc, payload)

    def repeat(self, device: DeviceIdentity, req_id: str, earlier: Seen[int]) -> None:
        """Answer a repeated request as the first time (once it was answered)."""
        if not earlier.running:
            payload = earlier.payload or encode({"rc": earlier.outcome, "reqId": req_id})
            self.publish(device, "response", payload)

    def send_answer(
        self,
        device: DeviceIdentity,
        req_id: str,
        rc: int,
        message: str | None = None,
        d: Mapping[str, Any] | None = None,
    ) -> bytes:
        """Publish an answer without recording it (see :meth:`answer`); returns the payload."""
        body: dict[str, Any] = {"rc": rc, "reqId": req_id}
        if message is not None:
            body["message"] = message
        if d is not None:
            body["d"] = d
        payload = encode(body)
        if len(payload) > codec.MAX_PAYLOAD:
            body = {"rc": codes.INTERNAL_ERROR, "reqId": req_id, "message": "answer too large"}
            payload = encode(body)
        self.counters[f"answered_{body['rc']}"] += 1
        self.publish(device, "response", payload)
        return payload

    def request(
        self,
        device: DeviceIdentity,
        suffix: str,
        d: Mapping[str, Any] | None,
        req_id: str,
        on_answer: OnAnswer,
    ) -> None:
        """Send a request of ours; ``on_answer`` gets the platform's rc (None: no answer)."""
        body: dict[str, Any] = {"reqId": req_id} if d is None else {"d": d, "reqId": req_id}
        self.awaiting.expect(req_id, device, suffix, self.response_timeout, on_answer)
        self.publish(device, suffix, encode(body))
        self.counters["requests_sent"] += 1

    def report(self, device: DeviceIdentity, suffix: str, d: Mapping[str, Any] | None) -> None:
        """Send a report (location, diag, notify); a refusal is logged once per code."""

        def answered(rc: int | None, message: str | None) -> None:
            if rc == codes.OK:
                return
            self.counters["reports_refused" if rc is not None else "reports_unanswered"] += 1
            self._log_once(
                f"report:{suffix}:{rc}",
                "%s for %s: %s",
                suffix,
                device,
                "no response" if rc is None else f"rc {codes.describe(rc)} {safe(message)}",
            )

        self.request(device, suffix, d, new_req_id(), answered)

    def platform_response(self, device: DeviceIdentity, response: PlatformResponse) -> None:
        """Hand the platform's response to the request of ours it answers."""
        if not self.awaiting.answer(device, response.req_id, response.rc, response.message):
            self.counters["responses_unmatched"] += 1
            log.debug("a response for %s with unknown reqId %s", device, safe(response.req_id))
