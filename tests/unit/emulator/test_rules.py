"""The pure rule checker: classification of topics and every platform rule."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.emulator import dmrules, grammar
from edged.emulator import rules as r
from edged.model import DeviceIdentity

DEV = DeviceIdentity("modbus-meter", "boiler-1")
DEVICE = "iot-2/type/modbus-meter/id/boiler-1"
DM_UP = "iotdevice-1/type/modbus-meter/id/boiler-1"
DM_DOWN = "iotdm-1/type/modbus-meter/id/boiler-1"
EVENT = f"{DEVICE}/evt/reading/fmt/json"
ALL_RULES = {
    r.RULE_TOPIC, r.RULE_PAYLOAD_SIZE, r.RULE_RETAIN, r.RULE_QOS, r.RULE_JSON, r.RULE_UTF8,
    r.RULE_DM_JSON, r.RULE_DM_SHAPE, r.RULE_DM_LIFETIME,
}  # fmt: skip


def rules_of(checked: r.Checked) -> list[str]:
    return [v.rule for v in checked.violations]


def test_good_event() -> None:
    checked = r.check_publication(EVENT, b'{"ts": "x", "d": {"t": 1}}', 1, False)
    assert checked.kind == "event"
    assert checked.parsed == grammar.EventTopic(DEV, "reading", "json")
    assert checked.data == {"ts": "x", "d": {"t": 1}}
    assert checked.violations == ()
    assert checked.accepted


@pytest.mark.parametrize(
    "topic",
    [
        f"{DEVICE}/cmd/setpoint/fmt/json",
        f"{DEVICE}/notify",
        f"{DM_DOWN}/response",
        f"{DM_DOWN}/mgmt/initiate/device/reboot",
        f"{DM_DOWN}/mgmt/custom/bundle-1/act",
    ],
)
def test_platform_side_topics_are_not_checked(topic: str) -> None:
    checked = r.check_publication(topic, b"\xff" * 200_000, 2, True)
    assert (checked.kind, checked.violations, checked.accepted) == ("platform", (), False)


def test_payload_size_limit() -> None:
    at_limit = r.check_publication(f"{DEVICE}/evt/b/fmt/bin", b"x" * 131072, 0, False)
    over = r.check_publication(f"{DEVICE}/evt/b/fmt/bin", b"x" * 131073, 0, False)
    assert at_limit.violations == ()
    assert rules_of(over) == [r.RULE_PAYLOAD_SIZE]
    assert not over.accepted


def test_retain_and_qos_are_flagged_but_the_event_accepted() -> None:
    checked = r.check_publication(EVENT, b"{}", 2, True)
    assert rules_of(checked) == [r.RULE_RETAIN, r.RULE_QOS]
    assert checked.accepted


@pytest.mark.parametrize(
    ("payload", "detail"),
    [
        (b"", "not valid JSON"),
        (b"{'a': 1}", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"[]", "JSON array"),
        (b'"text"', "JSON string"),
        (b"12", "JSON number"),
        (b"null", "JSON null"),
    ],
)
def test_json_format_needs_an_object(payload: bytes, detail: str) -> None:
    [violation] = r.check_publication(EVENT, payload, 0, False).violations
    assert violation.rule == r.RULE_JSON
    assert detail in violation.detail


def test_text_format_needs_utf8_and_other_formats_are_opaque() -> None:
    text = f"{DEVICE}/evt/log/fmt/text"
    assert rules_of(r.check_publication(text, "héllo".encode(), 0, False)) == []
    assert rules_of(r.check_publication(text, b"\xffoops", 0, False)) == [r.RULE_UTF8]
    binary = r.check_publication(f"{DEVICE}/evt/raw/fmt/bin", b"\xff", 0, False)
    assert (binary.violations, binary.data) == ((), None)


@pytest.mark.parametrize(
    ("topic", "detail"),
    [
        ("iot-2/evt/reading/fmt/json", "not a gateway topic"),
        ("sensors/boiler-1", "not a gateway topic"),
        ("iot-2/type/t/id/" + "d" * 37 + "/evt/e/fmt/json", "deviceId"),
        ("iot-2/type/bad type/id/d/evt/e/fmt/json", "typeId 'bad type'"),
        ("iot-2/type/t/id/d/evt/e", "not a gateway topic"),
        ("iot-2/type/t/id/d/evt/e/fmt/json/extra", "not a gateway topic"),
        ("iot-2/type/t/id/d/evt/e+/fmt/json", "event 'e+'"),
        ("iot-2/type/t/id/d/evt//fmt/json", "event ''"),
        ("iot-2/type/t/id/d/evt/e/fmt/#", "format '#'"),
        ("iot-2/type/t/id/d/evt/e/fmt/", "format ''"),
        ("iot-2/type/t/id/d/mon", "mon is the platform's status topic"),
        ("iot-2/app/watch/mon", "mon is the platform's status topic"),
        ("iot-2/type/t/id/d/evt/" + "e" * 65536 + "/fmt/json", "over MQTT's 65535"),
        ("iotdevice-1/type/t/id/d/mgmt/initiate/device/reboot", "unknown DM suffix"),
        ("iotdevice-1/type/t/id/d/response/extra", "unknown DM suffix"),
        ("iotdevice-1/mgmt/manage", "not a gateway topic"),
        ("", "not a gateway topic"),
    ],
)
def test_topic_grammar(topic: str, detail: str) -> None:
    checked = r.check_publication(topic, b"{}", 0, False)
    assert checked.kind == "invalid"
    assert checked.parsed is None
    [violation] = checked.violations
    assert (violation.topic, violation.rule) == (topic, r.RULE_TOPIC)
    assert detail in violation.detail


@pytest.mark.parametrize("name", ["sét", "with space", "e" * 129, "a:b"])
def test_event_and_format_names_are_free_text(name: str) -> None:
    # PROTOCOL.md §2.1 leaves them free text; edged's stricter rule for its own names is its
    # business, not the platform's.
    checked = r.check_publication(f"{DEVICE}/evt/{name}/fmt/{name}", b"x", 0, False)
    assert (checked.kind, checked.violations) == ("event", ())
    assert checked.parsed == grammar.EventTopic(DEV, name, name)


def test_every_gateway_dm_suffix_is_a_dm_topic() -> None:
    for suffix in dmrules.GATEWAY_SUFFIXES:
        checked = r.check_publication(f"{DM_UP}/{suffix}", b"{}", 1, False)
        assert checked.kind == "dm"
        assert checked.parsed == grammar.DMTopic(DEV, suffix, to_device=False)


def test_dm_payload_must_be_a_json_object() -> None:
    manage = f"{DM_UP}/mgmt/manage"
    assert rules_of(r.check_publication(manage, b"manage", 1, False)) == [r.RULE_DM_JSON]
    assert rules_of(r.check_publication(manage, b"[1]", 1, False)) == [r.RULE_DM_JSON]
    good = r.check_publication(manage, orjson.dumps({"reqId": "1", "d": {}}), 1, False)
    assert good.violations == ()


def test_min_lifetime_is_configurable() -> None:
    manage = f"{DM_UP}/mgmt/manage"
    body = orjson.dumps({"reqId": "1", "d": {"lifetime": 60}})
    assert rules_of(r.check_publication(manage, body, 1, False)) == [r.RULE_DM_LIFETIME]
    assert r.check_publication(manage, body, 1, False, min_lifetime=30).violations == ()


@given(
    topic=st.text(alphabet="iot-2dvcem1/typeshnjf+#a.b_x", max_size=60),
    payload=st.binary(max_size=64),
    qos=st.integers(0, 2),
    retain=st.booleans(),
)
def test_never_raises(topic: str, payload: bytes, qos: int, retain: bool) -> None:
    checked = r.check_publication(topic, payload, qos, retain)
    assert {v.rule for v in checked.violations} <= ALL_RULES
    assert all(v.topic == topic for v in checked.violations)


@given(
    suffix=st.sampled_from(sorted(dmrules.GATEWAY_SUFFIXES)),
    body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(
                st.sampled_from(["d", "rc", "reqId", "lifetime", "fields", "field", "value"]),
                children,
                max_size=4,
            )
        ),
        max_leaves=10,
    ),
)
def test_dm_checks_never_raise_on_any_json(suffix: str, body: object) -> None:
    payload = orjson.dumps(body) if _encodable(body) else b"x"
    checked = r.check_publication(f"{DM_UP}/{suffix}", payload, 1, False)
    assert {v.rule for v in checked.violations} <= ALL_RULES


def _encodable(value: object) -> bool:
    try:
        orjson.dumps(value)
    except TypeError:
        return False
    return True
