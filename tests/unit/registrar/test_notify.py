"""Notify parsing: any bytes give a Notify or a reason; each documented message has its kind."""

from __future__ import annotations

import orjson
import pytest

from edged.registrar.notify import (
    MAX_NOTIFY_BYTES,
    Kind,
    Malformed,
    Notify,
    classify,
    parse,
)


def body(**fields: object) -> bytes:
    base: dict[str, object] = {
        "Request": "publish",
        "Time": "2026-01-01T00:00:00Z",
        "Topic": "iot-2/type/pump/id/p1/evt/status/fmt/json",
        "Type": "pump",
        "Id": "p1",
        "Client": "g:org:gw:1",
        "RC": 3,
        "Message": "Device type is not valid.",
    }
    base.update(fields)
    return orjson.dumps({k: v for k, v in base.items() if v is not ...})


def notify(payload: bytes) -> Notify:
    result = parse(payload)
    assert isinstance(result, Notify)
    return result


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Topic does not match any allowed topic rules.", Kind.TOPIC),
        ("Device type is not valid.", Kind.DEVICE_TYPE),
        ("Device ID is not valid.", Kind.DEVICE_ID),
        ("Maximum number of devices per gateway is reached.", Kind.LIMIT_GATEWAY),
        ("Maximum number of devices per organization is reached.", Kind.LIMIT_ORG),
        ("Failed to create device because of internal errors.", Kind.INTERNAL),
        ("Something new happened", Kind.UNKNOWN),
        ("", Kind.UNKNOWN),
        ("  DEVICE   type is NOT valid  ", Kind.DEVICE_TYPE),
        ("Error: Maximum number of devices per organisation is reached", Kind.LIMIT_ORG),
    ],
)
def test_each_documented_message_has_its_kind(message: str, kind: Kind) -> None:
    assert classify(message) is kind
    assert notify(body(Message=message)).kind is kind


def test_a_full_notify_is_parsed() -> None:
    parsed = notify(body())
    assert parsed.device == "pump/p1"
    assert parsed.where == "pump/p1"
    assert parsed.rc == 3
    assert parsed.request == "publish"
    assert parsed.topic == "iot-2/type/pump/id/p1/evt/status/fmt/json"
    assert parsed.message == "Device type is not valid."


@pytest.mark.parametrize(
    ("rc", "expected"),
    [(3, 3), ("3", 3), (" 42 ", 42), ("-1", -1), ("RC_X", "RC_X"), (None, None), (True, "True")],
)
def test_rc_is_a_number_or_text(rc: object, expected: object) -> None:
    assert notify(body(RC=rc)).rc == expected


def test_missing_rc_is_none() -> None:
    assert notify(body(RC=...)).rc is None


def test_no_type_and_id_when_the_topic_was_invalid() -> None:
    parsed = notify(body(Type=..., Id=..., Topic="iot-2/garbage", Message="Topic does not x"))
    assert parsed.device is None
    assert parsed.where == "?"


@pytest.mark.parametrize(
    "fields",
    [
        {"Type": ...},
        {"Id": ...},
        {"Id": ["p1"]},
        {"Type": {"a": 1}},
        {"Id": True},
        {"Id": ""},
        {"Id": "x" * 500},
    ],
)
def test_unusable_type_or_id_gives_no_device(fields: dict[str, object]) -> None:
    parsed = notify(body(**fields))
    assert parsed.device is None
    assert len(parsed.where) < 120


def test_a_numeric_id_is_a_device_id() -> None:
    assert notify(body(Id=17)).device == "pump/17"


def test_every_key_missing_still_parses() -> None:
    parsed = notify(b"{}")
    assert parsed == Notify(Kind.UNKNOWN, "", None, "?", "request", "?", None)


def test_extra_keys_are_ignored() -> None:
    assert notify(body(Extra={"deep": [1, 2]}, Other=1)).kind is Kind.DEVICE_TYPE


def test_a_non_text_message_is_unknown_and_shown_escaped() -> None:
    parsed = notify(body(Message={"x": "y\nz"}))
    assert parsed.kind is Kind.UNKNOWN
    assert "\n" not in parsed.message


def test_outside_text_is_escaped_and_cut() -> None:
    parsed = notify(body(Message="bad\nFAKE LOG LINE" + "x" * 5000, Topic="t\r\n" * 1000))
    assert "\n" not in parsed.message and "\r" not in parsed.topic
    assert len(parsed.message) < 1000 and len(parsed.topic) < 1000  # escapes widen a char


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"not json", Malformed.NOT_JSON),
        (b"\xff\xfe", Malformed.NOT_JSON),
        (b"", Malformed.NOT_JSON),
        (b"[1, 2]", Malformed.NOT_OBJECT),
        (b'"text"', Malformed.NOT_OBJECT),
        (b"null", Malformed.NOT_OBJECT),
        (b"{" + b" " * MAX_NOTIFY_BYTES + b"}", Malformed.TOO_LARGE),
    ],
)
def test_unusable_payloads_give_a_reason(payload: bytes, reason: Malformed) -> None:
    assert parse(payload) is reason
