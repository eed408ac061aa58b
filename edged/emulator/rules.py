"""The platform's rules for what a gateway publishes (PROTOCOL.md §2.2, §4), as pure checks.

:func:`check_publication` classifies a received message by its topic and lists every rule it
breaks. Messages on platform-side topics (commands, notify, ``iotdm-1`` requests and answers)
are not gateway publications and are not checked: an application (the emulator itself, or a test
playing the platform) sends those. The grammar and limits are the emulator's own
(:mod:`~edged.emulator.grammar`, :mod:`~edged.emulator.limits`), never the gateway's.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

import orjson

from edged.appclient import grammar
from edged.emulator import dmrules, limits
from edged.emulator.records import Violation

RULE_TOPIC = "topic"
RULE_PAYLOAD_SIZE = "payload-size"
RULE_RETAIN = "retain"
RULE_QOS = "qos"
RULE_JSON = "json"
RULE_UTF8 = "utf8"
RULE_DM_JSON = "dm-json"
RULE_DM_SHAPE = dmrules.RULE_SHAPE
RULE_DM_LIFETIME = dmrules.RULE_LIFETIME
RULE_DM_REQID = "dm-reqid"

MAX_PAYLOAD = limits.MAX_PAYLOAD
MAX_GATEWAY_QOS = limits.MAX_GATEWAY_QOS

Kind: TypeAlias = Literal["event", "dm", "invalid", "platform"]
_Add: TypeAlias = Callable[[str, str], None]


@dataclass(frozen=True, slots=True)
class Checked:
    """The verdict on one received message.

    ``kind`` is ``platform`` for platform-side topics (not checked, ``violations`` empty),
    ``event`` or ``dm`` for gateway publications on a valid topic, ``invalid`` for anything else.
    ``data`` is the decoded JSON body when the message is JSON and decoded, else ``None``.
    """

    kind: Kind
    parsed: grammar.EventTopic | grammar.DMTopic | None
    data: Any
    violations: tuple[Violation, ...]

    @property
    def accepted(self) -> bool:
        """False when the platform would drop the message outright (bad topic, too large)."""
        return self.kind in ("event", "dm") and not any(
            v.rule == RULE_PAYLOAD_SIZE for v in self.violations
        )


def check_publication(
    topic: str, payload: bytes, qos: int, retain: bool, *, min_lifetime: int = 3600
) -> Checked:
    """Classify a message received on ``topic`` and check it against the platform's rules."""
    parsed = grammar.parse(topic)
    if isinstance(parsed, grammar.CommandTopic | grammar.NotifyTopic) or (
        isinstance(parsed, grammar.DMTopic) and parsed.to_device
    ):
        return Checked("platform", None, None, ())
    found: list[Violation] = []

    def add(rule: str, detail: str) -> None:
        found.append(Violation(topic, rule, detail))

    if len(payload) > MAX_PAYLOAD:
        add(RULE_PAYLOAD_SIZE, f"{len(payload)} bytes is over the {MAX_PAYLOAD}-byte limit")
    if retain and not limits.RETAIN_ALLOWED:
        add(RULE_RETAIN, "retain flag set: the platform never stores a gateway's messages")
    if qos > MAX_GATEWAY_QOS:
        add(RULE_QOS, f"QoS {qos}: a managed gateway may publish at QoS 0 or 1")

    data: Any = None
    kind: Kind
    if isinstance(parsed, grammar.EventTopic):
        kind = "event"
        data = _check_event_body(parsed.format, payload, add)
    elif isinstance(parsed, grammar.DMTopic) and parsed.suffix in dmrules.GATEWAY_SUFFIXES:
        kind = "dm"
        data = _check_dm_body(parsed.suffix, payload, add, min_lifetime)
    else:
        kind, parsed = "invalid", None
        add(RULE_TOPIC, explain_topic(topic))
    return Checked(kind, parsed, data, tuple(found))


def decode_json(payload: bytes) -> tuple[Any, str | None]:
    """``(value, None)`` when ``payload`` is JSON, else ``(None, reason)``."""
    try:
        return orjson.loads(payload), None
    except orjson.JSONDecodeError as exc:
        return None, str(exc)


def _check_event_body(fmt: str, payload: bytes, add: _Add) -> Any:
    if fmt == "json":
        data, error = decode_json(payload)
        if error is not None:
            add(RULE_JSON, f"fmt json but not valid JSON: {error}")
        elif not isinstance(data, dict):
            add(RULE_JSON, f"fmt json but a JSON {_json_type(data)}, not an object")
        return data
    if fmt == "text":
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            add(RULE_UTF8, f"fmt text but not valid UTF-8: {exc.reason} at byte {exc.start}")
    return None


def _check_dm_body(suffix: str, payload: bytes, add: _Add, min_lifetime: int) -> Any:
    data, error = decode_json(payload)
    if error is not None:
        add(RULE_DM_JSON, f"DM messages are JSON: {error}")
        return None
    if not isinstance(data, dict):
        add(RULE_DM_JSON, f"DM messages are JSON objects, got a JSON {_json_type(data)}")
        return data
    for rule, detail in dmrules.check_body(suffix, data, min_lifetime=min_lifetime):
        add(rule, detail)
    return data


def _json_type(value: Any) -> str:
    names = {list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


_ALLOWED = (
    "a gateway publishes only iot-2/type/T/id/D/evt/E/fmt/F and iotdevice-1/type/T/id/D/<DM suffix>"
)


def explain_topic(topic: str) -> str:
    """Why ``topic`` is not a topic a gateway may publish on (for violation details)."""
    size = len(topic.encode("utf-8", "surrogatepass"))
    if size > grammar.MAX_TOPIC_BYTES:
        return f"topic of {size} bytes is over MQTT's {grammar.MAX_TOPIC_BYTES}"
    if isinstance(grammar.parse(topic), grammar.DeviceStatusTopic | grammar.AppStatusTopic):
        return f"not a gateway topic: mon is the platform's status topic; {_ALLOWED}"
    levels = topic.split("/")
    if len(levels) < 5 or levels[1] != "type" or levels[3] != "id":
        return f"not a gateway topic: {_ALLOWED}"
    return _explain_levels(levels) or f"not a gateway topic: {_ALLOWED}"


def _explain_levels(levels: list[str]) -> str | None:
    """The bad id, DM suffix, event or format in ``root/type/T/id/D/...``, if any."""
    for what, value in (("typeId", levels[2]), ("deviceId", levels[4])):
        if not grammar.is_valid_id(value):
            return f"{what} {value!r} is not 1-{grammar.MAX_ID_LENGTH} characters of A-Za-z0-9-_."
    root, rest = levels[0], levels[5:]
    if root == grammar.DM_TO_PLATFORM:
        known = ", ".join(sorted(dmrules.GATEWAY_SUFFIXES))
        return f"unknown DM suffix {'/'.join(rest)!r} (a gateway may send: {known})"
    if root == grammar.EVENTS_ROOT and len(rest) == 4 and rest[0] == "evt" and rest[2] == "fmt":
        for what, value in (("event", rest[1]), ("format", rest[3])):
            if not grammar.is_valid_level(value):
                return f"{what} {value!r} is not a topic level (empty, a wildcard, '/' or NUL)"
    return None
