"""What arrives from the gateway: checked against the platform's rules, recorded, and answered.

The emulated DM server answers the gateway's own DM requests (by its :class:`AnswerPolicy`) and
matches the gateway's answers to the DM requests the emulator sent.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import orjson

from edged.appclient import grammar
from edged.emulator import dmrules, rules
from edged.emulator.answers import AnswerPolicy
from edged.emulator.autoreg import AutoRegistration
from edged.emulator.recorder import Recorder
from edged.emulator.records import (
    DMExchange,
    DMMessage,
    Publication,
    ReceivedEvent,
    Record,
    SentNotify,
    Violation,
)


class Received(NamedTuple):
    """What a received message calls for: an answer to publish, and records for the listeners;
    and notify messages to publish (a failed auto-registration)."""

    answer: tuple[str, bytes] | None
    records: list[Record]
    notifies: tuple[SentNotify, ...] = ()


class Inbound:
    """Checks and records every gateway publication; answers the gateway's DM requests.

    Args:
        recorder: Where to record (under its lock).
        min_lifetime: Smallest non-zero manage lifetime accepted without a violation.
        autoreg: The platform's auto-registration of devices; ``None``: every device is
            accepted at once.
    """

    def __init__(
        self, recorder: Recorder, min_lifetime: int, autoreg: AutoRegistration | None = None
    ) -> None:
        self._rec = recorder
        self._min_lifetime = min_lifetime
        self.autoreg = autoreg
        """Change or read it only with the recorder's lock held."""
        self.answers = AnswerPolicy()
        """How the DM server answers; change it only with the recorder's lock held."""

    def receive(self, topic: str, payload: bytes, qos: int, retain: bool) -> Received:
        """Check and record one message; return the DM answer to send and the new records.

        The caller publishes the answer first, then hands the records to the listeners.
        """
        checked = rules.check_publication(
            topic, payload, qos, retain, min_lifetime=self._min_lifetime
        )
        if checked.kind == "platform":
            # commands, notify, DM requests: what an application sends, not a gateway
            return Received(None, [])
        now = time.time()
        emitted: list[Record] = []
        answer: tuple[str, bytes] | None = None
        notifies: tuple[SentNotify, ...] = ()
        rec = self._rec
        with rec.cond:
            rec.publications.append(
                Publication(
                    topic,
                    checked.parsed,
                    payload,
                    checked.data,
                    qos,
                    retain,
                    now,
                    checked.violations,
                )
            )
            violations = list(checked.violations)
            parsed = checked.parsed
            accepted = checked.accepted
            if accepted and parsed is not None and self.autoreg is not None:
                admission = self.autoreg.admit(parsed.device, topic, now)
                accepted = admission.accepted  # False: dropped, recorded as a publication only
                if admission.violation is not None:
                    violations.append(admission.violation)
                if admission.notify is not None:
                    notifies = (admission.notify,)
                    rec.notifies.append(admission.notify)
                    emitted.append(admission.notify)
            if accepted and isinstance(parsed, grammar.EventTopic):
                event = ReceivedEvent(
                    parsed.device,
                    parsed.event,
                    parsed.format,
                    topic,
                    payload,
                    checked.data,
                    qos,
                    retain,
                    now,
                )
                rec.events.append(event)
                rec.registry.saw_event(event)
                emitted.append(event)
            elif accepted and isinstance(parsed, grammar.DMTopic):
                answer = self._receive_dm(
                    parsed,
                    topic=topic,
                    payload=payload,
                    checked=checked,
                    now=now,
                    violations=violations,
                    emitted=emitted,
                )
            rec.violations.extend(violations)
            emitted.extend(violations)
            rec.cond.notify_all()
        return Received(answer, emitted, notifies)

    def _receive_dm(
        self,
        parsed: grammar.DMTopic,
        *,
        topic: str,
        payload: bytes,
        checked: rules.Checked,
        now: float,
        violations: list[Violation],
        emitted: list[Record],
    ) -> tuple[str, bytes] | None:
        """Record a gateway DM message; return the answer to publish, if any (lock held)."""
        rec = self._rec
        body = checked.data if isinstance(checked.data, dict) else None
        req_id = body.get("reqId") if body is not None else None
        req_id = req_id if isinstance(req_id, str) else None
        message = DMMessage("up", parsed.device, parsed.suffix, topic, payload, body, req_id, now)
        rec.dm_messages.append(message)
        rec.registry.saw_dm(parsed.device, now)
        if parsed.suffix == dmrules.RESPONSE:
            self._receive_response(message, violations, emitted)
            return None
        problem = next(
            (
                v.detail
                for v in checked.violations
                if v.rule in (rules.RULE_DM_JSON, rules.RULE_DM_SHAPE)
            ),
            None,
        )
        decision = self.answers.decide(parsed.device, parsed.suffix, problem)
        if req_id is None or decision.rc is None:
            unanswered = DMExchange("gateway", message, None)
            rec.dm_exchanges.append(unanswered)
            emitted.append(unanswered)
            return None
        response_body: dict[str, Any] = {"rc": decision.rc, "reqId": req_id}
        if decision.message is not None:
            response_body["message"] = decision.message
        response_topic = grammar.dm_platform_topic(parsed.device, dmrules.RESPONSE)
        response_payload = orjson.dumps(response_body)
        response = DMMessage(
            "down",
            parsed.device,
            dmrules.RESPONSE,
            response_topic,
            response_payload,
            response_body,
            req_id,
            now,
        )
        rec.dm_messages.append(response)
        exchange = DMExchange("gateway", message, response)
        rec.dm_exchanges.append(exchange)
        emitted.append(exchange)
        if 200 <= decision.rc < 300 and body is not None:
            rec.registry.accept_request(parsed.device, parsed.suffix, body, now)
        return response_topic, response_payload

    def _receive_response(
        self, message: DMMessage, violations: list[Violation], emitted: list[Record]
    ) -> None:
        """The gateway answered a DM request (lock held)."""
        rec = self._rec
        req_id = message.req_id
        if req_id is None:
            return  # the shape check already flagged the missing reqId
        request = rec.issued.get(req_id)
        if request is None:
            violations.append(
                Violation(message.topic, rules.RULE_DM_REQID, f"answer to unknown reqId {req_id!r}")
            )
            return
        if request.device != message.device:
            violations.append(
                Violation(
                    message.topic,
                    rules.RULE_DM_REQID,
                    f"reqId {req_id!r} was sent to {request.device}, answered for {message.device}",
                )
            )
        rec.dm_responses.setdefault(req_id, message)
        if req_id in rec.outstanding:
            rec.outstanding.discard(req_id)
            exchange = DMExchange("platform", request, message)
            rec.dm_exchanges.append(exchange)
            emitted.append(exchange)
