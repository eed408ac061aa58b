"""The emulator checks every gateway publication against the platform's rules, on a real broker."""

from __future__ import annotations

import orjson
import pytest

from edged.emulator import PlatformEmulator, grammar
from edged.emulator import rules as r
from tests.integration.emulator.helpers import (
    BOILER,
    BOILER_READING,
    GATEWAY,
    PATH,
    RawClient,
    event_body,
)

pytestmark = pytest.mark.integration


def test_good_event_is_recorded_without_violations(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.publish(BOILER_READING, event_body(temperature=21.5), qos=1)

    [event] = emu.wait_for_events(device=BOILER, event="reading")

    assert event.values == {"temperature": 21.5}
    assert (event.qos, event.retain, event.format) == (1, False, "json")
    assert emu.violations == []
    [publication] = emu.publications
    assert publication.parsed == grammar.EventTopic(BOILER, "reading", "json")


def test_payload_limit_is_131072_bytes(emu: PlatformEmulator, gateway: RawClient) -> None:
    def body(size: int) -> bytes:
        head, tail = b'{"d":"', b'"}'
        return head + b"x" * (size - len(head) - len(tail)) + tail

    gateway.publish(f"iot-2/{PATH[BOILER]}/evt/big/fmt/json", body(r.MAX_PAYLOAD))
    gateway.publish(f"iot-2/{PATH[BOILER]}/evt/too-big/fmt/json", body(r.MAX_PAYLOAD + 1))

    [violation] = emu.wait_for_violations(rule=r.RULE_PAYLOAD_SIZE)
    assert violation.topic == f"iot-2/{PATH[BOILER]}/evt/too-big/fmt/json"
    assert "131073 bytes" in violation.detail
    # The platform drops an oversize message: it is not an event.
    assert [e.event for e in emu.events] == ["big"]


def test_retain_and_qos2_are_flagged_as_published(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.publish(f"iot-2/{PATH[BOILER]}/evt/kept/fmt/json", event_body(v=1), retain=True)
    gateway.publish(f"iot-2/{PATH[BOILER]}/evt/twice/fmt/json", event_body(v=2), qos=2)

    emu.wait_for_events(2)
    kept, twice = emu.events
    assert kept.retain
    assert kept.qos == 1
    assert twice.qos == 2
    assert not twice.retain
    assert [(v.topic, v.rule) for v in emu.violations] == [
        (f"iot-2/{PATH[BOILER]}/evt/kept/fmt/json", r.RULE_RETAIN),
        (f"iot-2/{PATH[BOILER]}/evt/twice/fmt/json", r.RULE_QOS),
    ]


@pytest.mark.parametrize(
    ("payload", "expected"),
    [(b"temperature=21.5", "not valid JSON"), (b"[1, 2]", "JSON array, not an object")],
)
def test_json_format_needs_a_json_object(
    emu: PlatformEmulator, gateway: RawClient, payload: bytes, expected: str
) -> None:
    gateway.publish(BOILER_READING, payload)

    [violation] = emu.wait_for_violations(rule=r.RULE_JSON)
    assert expected in violation.detail
    [event] = emu.events  # accepted by the platform all the same, just not as JSON
    assert event.payload == payload


def test_bad_topics_from_any_client_count_as_gateway_publications(
    emu: PlatformEmulator, app: RawClient
) -> None:
    # The gateway's ACL would drop these; an application client can publish them.
    bad = [
        "iot-2/evt/reading/fmt/json",  # device short form
        "iot-2/type/t/id/" + "d" * 37 + "/evt/reading/fmt/json",
        "iot-2/type/t/id/d/evt/reading",
        "iotdevice-1/type/t/id/d/mgmt/bogus",
        "sensors/boiler-1",
    ]
    for topic in bad:
        app.publish(topic, event_body(v=1))
    # Platform-side messages are not checked: commands, notify, DM requests and answers.
    app.publish(f"iot-2/{PATH[BOILER]}/cmd/setpoint/fmt/json", {"value": 1})
    app.publish(f"iot-2/{PATH[GATEWAY]}/notify", {"Message": "x"})
    app.publish(f"iotdm-1/{PATH[BOILER]}/mgmt/initiate/device/reboot", {"reqId": "1"})
    app.publish(f"iotdm-1/{PATH[BOILER]}/response", {"rc": 200, "reqId": "2"})
    app.publish(f"iot-2/{PATH[BOILER]}/evt/sentinel/fmt/json", event_body(v=1))

    emu.wait_for_events(event="sentinel")
    violations = emu.violations
    assert [(v.topic, v.rule) for v in violations] == [(topic, r.RULE_TOPIC) for topic in bad]
    assert "deviceId" in violations[1].detail
    assert "unknown DM suffix 'mgmt/bogus'" in violations[3].detail
    assert len(emu.publications) == len(bad) + 1
    assert emu.devices.keys() == {BOILER}


def test_own_commands_notifies_and_requests_are_ignored(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    emu.send_command(BOILER, "setpoint", {"value": 22})
    emu.publish_notify(GATEWAY, device=BOILER, message="Device type is not valid.")
    emu.dm_publish(BOILER, "device/update", {"d": {"fields": []}})
    gateway.publish(f"iot-2/{PATH[BOILER]}/evt/sentinel/fmt/json", event_body(v=1))

    emu.wait_for_events(event="sentinel")
    assert [p.topic for p in emu.publications] == [f"iot-2/{PATH[BOILER]}/evt/sentinel/fmt/json"]
    assert emu.violations == []


def test_dm_messages_are_checked_for_shape(emu: PlatformEmulator, gateway: RawClient) -> None:
    gateway.publish(f"iotdevice-1/{PATH[BOILER]}/response", {"reqId": "r1", "rc": "200"})
    gateway.publish(f"iotdevice-1/{PATH[BOILER]}/mgmt/manage", b"manage me")
    gateway.publish(
        f"iotdevice-1/{PATH[BOILER]}/mgmt/manage", {"reqId": "m1", "d": {"lifetime": 60}}
    )

    emu.wait_for_violations(3)
    rules = [v.rule for v in emu.violations]
    # the answer with a string rc is also an answer to a reqId never sent
    assert rules[:2] == [r.RULE_DM_SHAPE, r.RULE_DM_REQID]
    assert r.RULE_DM_JSON in rules
    emu.wait_for_violations(rule=r.RULE_DM_LIFETIME)


def test_gateway_response_must_answer_a_request_sent_to_that_device(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    request = emu.dm_publish(BOILER, "observe", {"reqId": "obs-1", "d": {"fields": []}})
    other = f"iotdevice-1/{PATH[GATEWAY]}/response"
    gateway.publish(other, orjson.dumps({"rc": 200, "reqId": request.req_id}))

    [violation] = emu.wait_for_violations(rule=r.RULE_DM_REQID)
    assert "was sent to modbus-meter/boiler-1" in violation.detail
