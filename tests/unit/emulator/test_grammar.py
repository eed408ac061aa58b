"""The emulator's own topic grammar, against literal topics taken from PROTOCOL.md §1.4, §2, §4."""

from __future__ import annotations

import pytest

from edged.emulator import grammar as g
from edged.emulator import limits
from edged.model import DeviceIdentity

# The protocol's own example names (§4.2): gateway gw:GW1 managing attached sensor:S1.
GW = DeviceIdentity("gw", "GW1")
S1 = DeviceIdentity("sensor", "S1")


def test_builders_write_the_documented_topics() -> None:
    assert g.event_topic(S1, "reading") == "iot-2/type/sensor/id/S1/evt/reading/fmt/json"
    assert g.event_topic(GW, "status", "txt") == "iot-2/type/gw/id/GW1/evt/status/fmt/txt"
    assert g.command_topic(S1, "reboot") == "iot-2/type/sensor/id/S1/cmd/reboot/fmt/json"
    assert g.command_topic(S1, "raw", "bin") == "iot-2/type/sensor/id/S1/cmd/raw/fmt/bin"
    assert g.command_filter(S1) == "iot-2/type/sensor/id/S1/cmd/+/fmt/+"
    assert g.notify_topic(GW) == "iot-2/type/gw/id/GW1/notify"
    assert g.dm_device_topic(S1, "mgmt/manage") == "iotdevice-1/type/sensor/id/S1/mgmt/manage"
    assert g.dm_platform_topic(S1, "response") == "iotdm-1/type/sensor/id/S1/response"
    assert (
        g.dm_platform_topic(S1, "mgmt/initiate/device/reboot")
        == "iotdm-1/type/sensor/id/S1/mgmt/initiate/device/reboot"
    )


def test_client_ids() -> None:
    assert g.gateway_client_id("org123", GW) == "g:org123:gw:GW1"
    assert g.application_client_id("org123", "watch") == "a:org123:watch"


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("iot-2/type/sensor/id/S1/evt/reading/fmt/json", g.EventTopic(S1, "reading", "json")),
        # event, command and format are free text (§2.1): one level, no wildcard
        ("iot-2/type/sensor/id/S1/evt/sét 1/fmt/csv", g.EventTopic(S1, "sét 1", "csv")),
        ("iot-2/type/sensor/id/S1/evt/" + "e" * 200 + "/fmt/x", g.EventTopic(S1, "e" * 200, "x")),
        ("iot-2/type/sensor/id/S1/cmd/set/fmt/txt", g.CommandTopic(S1, "set", "txt")),
        ("iot-2/type/gw/id/GW1/notify", g.NotifyTopic(GW)),
        ("iot-2/type/sensor/id/S1/mon", g.DeviceStatusTopic(S1)),
        ("iot-2/app/watch-1/mon", g.AppStatusTopic("watch-1")),
        ("iotdevice-1/type/sensor/id/S1/mgmt/manage", g.DMTopic(S1, "mgmt/manage", False)),
        ("iotdevice-1/type/sensor/id/S1/response", g.DMTopic(S1, "response", False)),
        ("iotdm-1/type/sensor/id/S1/response", g.DMTopic(S1, "response", True)),
        ("iotdm-1/type/sensor/id/S1/mgmt/custom/b/a", g.DMTopic(S1, "mgmt/custom/b/a", True)),
        # ids: 36 characters of A-Za-z0-9-_. (§1.4)
        (
            "iot-2/type/a.b_c-D/id/" + "9" * 36 + "/evt/e/fmt/json",
            g.EventTopic(DeviceIdentity("a.b_c-D", "9" * 36), "e", "json"),
        ),
    ],
)
def test_parse(topic: str, parsed: g.Topic) -> None:
    assert g.parse(topic) == parsed


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "/",
        "iot-2/evt/reading/fmt/json",  # a device's short form, not a gateway's
        "iot-2/type/sensor/id/S1",
        "iot-2/type/sensor/id/S1/evt/reading",
        "iot-2/type/sensor/id/S1/evt/reading/fmt/json/extra",
        "iot-2/type/sensor/id/S1/evt/reading/format/json",
        "iot-2/type/sensor/id/S1/event/reading/fmt/json",
        "iot-2/type/sensor/id/S1/evt//fmt/json",  # empty levels
        "iot-2/type/sensor/id/S1/evt/reading/fmt/",
        "iot-2/type//id/S1/evt/reading/fmt/json",
        "iot-2/type/sensor/id//evt/reading/fmt/json",
        "iot-2/type/sensor/id/S1/evt/+/fmt/json",  # wildcards are for subscriptions only
        "iot-2/type/sensor/id/S1/evt/a+b/fmt/json",
        "iot-2/type/sensor/id/S1/evt/reading/fmt/#",
        "iot-2/type/+/id/S1/evt/reading/fmt/json",
        "iot-2/type/sensor/id/#",
        "iot-2/type/sensor/id/S1/evt/nul\x00/fmt/json",
        "iot-2/type/sensor/id/S1/evt/\ud800/fmt/json",  # not encodable as UTF-8
        "iot-2/type/sensor/id/" + "x" * 37 + "/evt/reading/fmt/json",  # ids: 36 at most
        "iot-2/type/" + "x" * 37 + "/id/S1/evt/reading/fmt/json",
        "iot-2/type/sensor/id/S 1/evt/reading/fmt/json",  # ids: A-Za-z0-9-_. only
        "iot-2/type/sensör/id/S1/evt/reading/fmt/json",
        "iot-2/type/sensor/id/S:1/evt/reading/fmt/json",
        "iot-2/type/sensor/id/S1/notify/x",
        "iot-2/type/sensor/id/S1/mon/x",
        "iot-2/app/wat ch/mon",
        "iot-2/app/watch",
        "iotdm-1/type/sensor/id/S1",
        "iotdm-1/type/sensor/id/S1/response//x",
        "iotdevice-1/type/sensor/id/S1/mgmt/+",
        "iotdevice-1/mgmt/manage",  # a device's short form
        "other/type/sensor/id/S1/evt/reading/fmt/json",
        "iot-2/type/sensor/id/S1/evt/" + "e" * 65535 + "/fmt/json",  # over MQTT's 65535 bytes
    ],
)
def test_parse_rejects(topic: str) -> None:
    assert g.parse(topic) is None


@pytest.mark.parametrize(
    ("value", "valid"),
    [("a", True), ("A-z_0.9", True), ("x" * 36, True), ("x" * 37, False), ("", False),
     ("a b", False), ("a/b", False), ("a+", False), ("é", False), ("a:b", False)],
)  # fmt: skip
def test_ids(value: str, valid: bool) -> None:
    assert g.is_valid_id(value) is valid


def test_limits_are_the_documented_ones() -> None:
    assert limits.MAX_PAYLOAD == 131072  # §2.2: 128 KB
    assert limits.MAX_GATEWAY_QOS == 1  # §2.2: a managed gateway publishes at QoS 0 or 1
    assert limits.RETAIN_ALLOWED is False  # §2.2: orgs may not publish retained messages
