"""Every topic and client id the gateway builds, pinned as a literal checked against PROTOCOL.md.

tests/unit/test_topics.py round-trips the builders through the parser; a mistake made in both
would pass there. Here each expected string is written out by hand from the protocol (section
given per case), so neither the builder nor the parser vouches for itself. The names are the
protocol's own examples: gateway ``gw:GW1`` with attached device ``sensor:S1`` (§4.2).
"""

from __future__ import annotations

import pytest

from edged import topics
from edged.config.models import CommandsConfig, StatusConfig
from edged.model import DeviceIdentity

GW = DeviceIdentity("gw", "GW1")
S1 = DeviceIdentity("sensor", "S1")


# -- what the gateway builds ----------------------------------------------------------------------


def test_client_ids() -> None:
    # §1.4: gateway g:<orgId>:<typeId>:<deviceId>, application a:<orgId>:<appId>
    assert topics.gateway_client_id("abc123", GW) == "g:abc123:gw:GW1"
    assert topics.application_client_id("abc123", "app1") == "a:abc123:app1"


def test_event_topics() -> None:
    # §2.1: iot-2/type/<T>/id/<D>/evt/<eventId>/fmt/<format>, for the gateway and for a device
    assert topics.event_topic(S1, "reading") == "iot-2/type/sensor/id/S1/evt/reading/fmt/json"
    assert topics.event_topic(GW, "e", "txt") == "iot-2/type/gw/id/GW1/evt/e/fmt/txt"
    assert topics.event_topic(DeviceIdentity("t", "d"), "e") == "iot-2/type/t/id/d/evt/e/fmt/json"


def test_the_gateways_own_events_with_the_default_names() -> None:
    # The status event and command results are ordinary events (§2.1), JSON by default.
    status = topics.event_topic(GW, StatusConfig().event)
    assert status == "iot-2/type/gw/id/GW1/evt/status/fmt/json"
    result = topics.event_topic(S1, CommandsConfig().result_event)
    assert result == "iot-2/type/sensor/id/S1/evt/cmdResult/fmt/json"


def test_command_topics_and_filter() -> None:
    # §2.1: iot-2/type/<T>/id/<D>/cmd/<commandId>/fmt/<format>; `+` allowed for commandId and
    # format in the subscription (the protocol's example: iot-2/type/mydevice/id/+/cmd/+/fmt/+)
    assert topics.command_topic(S1, "reboot") == "iot-2/type/sensor/id/S1/cmd/reboot/fmt/json"
    assert topics.command_topic(GW, "raw", "bin") == "iot-2/type/gw/id/GW1/cmd/raw/fmt/bin"
    assert topics.command_filter(S1) == "iot-2/type/sensor/id/S1/cmd/+/fmt/+"
    assert topics.command_filter(GW) == "iot-2/type/gw/id/GW1/cmd/+/fmt/+"
    # §2.1: "+ allowed for typeId, deviceId, commandId, format"
    assert topics.command_filter_for_type("sensor") == "iot-2/type/sensor/id/+/cmd/+/fmt/+"


def test_notify_topic() -> None:
    # §2.1, §3.2: iot-2/type/<gwType>/id/<gwId>/notify
    assert topics.notify_topic(GW) == "iot-2/type/gw/id/GW1/notify"


def test_device_management_topics() -> None:
    # §4.1, §4.2: platform -> gateway iotdm-1/type/<T>/id/<D>/<suffix>, gateway -> platform
    # iotdevice-1/type/<T>/id/<D>/<suffix>; the subscription ends in # (§4.1, §7 question 8).
    assert topics.dm_request_filter(GW) == "iotdm-1/type/gw/id/GW1/#"
    assert topics.dm_request_filter(S1) == "iotdm-1/type/sensor/id/S1/#"
    # §4.1: "+ may replace T and D (e.g. iotdm-1/type/+/id/+/#)"
    assert topics.dm_request_filter_all() == "iotdm-1/type/+/id/+/#"
    manage = topics.dm_device_topic(S1, "mgmt/manage")
    assert manage == "iotdevice-1/type/sensor/id/S1/mgmt/manage"
    assert topics.dm_platform_topic(S1, "response") == "iotdm-1/type/sensor/id/S1/response"
    reboot = topics.dm_platform_topic(S1, "mgmt/initiate/device/reboot")
    assert reboot == "iotdm-1/type/sensor/id/S1/mgmt/initiate/device/reboot"
    assert topics.dm_device_topic(S1, "response") == "iotdevice-1/type/sensor/id/S1/response"


# -- what the gateway parses ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "parsed"),
    [
        ("iot-2/type/sensor/id/S1/cmd/reboot/fmt/json", topics.CommandTopic(S1, "reboot", "json")),
        ("iot-2/type/gw/id/GW1/cmd/ping/fmt/txt", topics.CommandTopic(GW, "ping", "txt")),
        ("iot-2/type/gw/id/GW1/notify", topics.NotifyTopic(GW)),
        ("iot-2/type/sensor/id/S1/evt/reading/fmt/json", topics.EventTopic(S1, "reading", "json")),
        (
            "iotdm-1/type/sensor/id/S1/mgmt/initiate/device/reboot",
            topics.DMTopic(S1, "mgmt/initiate/device/reboot", to_device=True),
        ),
        ("iotdm-1/type/gw/id/GW1/response", topics.DMTopic(GW, "response", to_device=True)),
        (
            "iotdevice-1/type/sensor/id/S1/response",
            topics.DMTopic(S1, "response", to_device=False),
        ),
        # ids: at most 36 of a-z A-Z 0-9 - _ . (§1.4)
        (
            "iot-2/type/a-b_c.D9/id/" + "x" * 36 + "/cmd/c/fmt/json",
            topics.CommandTopic(DeviceIdentity("a-b_c.D9", "x" * 36), "c", "json"),
        ),
        # edged's own rule for command and format names: 1-128 of A-Za-z0-9_.-
        (
            "iot-2/type/t/id/d/cmd/" + "c" * 128 + "/fmt/json",
            topics.CommandTopic(DeviceIdentity("t", "d"), "c" * 128, "json"),
        ),
    ],
)
def test_parse(topic: str, parsed: topics.ParsedTopic) -> None:
    assert topics.parse(topic) == parsed


@pytest.mark.parametrize(
    "topic",
    [
        "",
        "iot-2/cmd/reboot/fmt/json",  # a device's short form (§2.1: gateways use the long form)
        "iot-2/type/sensor/id/S1/cmd/reboot",
        "iot-2/type/sensor/id/S1/cmd/reboot/fmt/json/x",
        "iot-2/type/sensor/id/S1/cmd/reboot/format/json",
        "iot-2/type/sensor/id/S1/command/reboot/fmt/json",
        "iot-2/type/sensor/id/S1/mon",  # device status: edged does not take it
        "iot-2/type/sensor/id/S1/notify/x",
        "iot2/type/sensor/id/S1/cmd/reboot/fmt/json",
        # empty levels
        "iot-2/type//id/S1/cmd/reboot/fmt/json",
        "iot-2/type/sensor/id//cmd/reboot/fmt/json",
        "iotdm-1/type/sensor/id/S1",
        "iotdm-1/type/sensor/id/S1/",
        "iotdm-1/type/sensor/id/S1/response//x",
        # ids outside 1-36 of A-Za-z0-9-_. (§1.4)
        "iot-2/type/sensor/id/" + "x" * 37 + "/cmd/reboot/fmt/json",
        "iot-2/type/" + "x" * 37 + "/id/S1/cmd/reboot/fmt/json",
        "iot-2/type/sensor/id/S 1/cmd/reboot/fmt/json",
        "iot-2/type/sensor/id/S:1/cmd/reboot/fmt/json",
        "iot-2/type/sensör/id/S1/cmd/reboot/fmt/json",
        "iotdm-1/type/sensor/id/S@1/response",
        # event names outside edged's 1-128 of A-Za-z0-9_.- (the protocol leaves them free text)
        "iot-2/type/sensor/id/S1/evt//fmt/json",
        "iot-2/type/sensor/id/S1/evt/" + "e" * 129 + "/fmt/json",
        "iot-2/type/sensor/id/S1/evt/reading/fmt/" + "f" * 129,
        "iot-2/type/sensor/id/S1/evt/sét/fmt/json",
        "iot-2/type/sensor/id/S1/evt/re ading/fmt/json",
        "iot-2/type/sensor/id/S1/evt/+/fmt/json",
        # wildcards: never in a topic a message was published on (MQTT)
        "iot-2/type/+/id/S1/cmd/reboot/fmt/json",
        "iot-2/type/sensor/id/+/cmd/reboot/fmt/json",
        "iot-2/type/sensor/id/S1/cmd/#",
        "iotdm-1/type/+/id/+/response",
    ],
)
def test_parse_rejects(topic: str) -> None:
    assert topics.parse(topic) is None


@pytest.mark.parametrize(
    "topic",
    [
        "iot-2/type/sensor/id/S1/cmd//fmt/json",  # empty levels
        "iot-2/type/sensor/id/S1/cmd/reboot/fmt/",
        "iot-2/type/sensor/id/S1/cmd/" + "c" * 129 + "/fmt/json",  # over edged's 128
        "iot-2/type/sensor/id/S1/cmd/reboot/fmt/" + "f" * 129,
        "iot-2/type/sensor/id/S1/cmd/sét/fmt/json",  # outside edged's A-Za-z0-9_.-
        "iot-2/type/sensor/id/S1/cmd/re boot/fmt/json",
        "iot-2/type/sensor/id/S1/cmd/+/fmt/+",  # wildcards
        "iot-2/type/sensor/id/S1/cmd/reboot/fmt/#",
    ],
)
def test_bad_command_levels_are_never_a_command(topic: str) -> None:
    # The device is nameable, so the gateway may answer with a refusal (issue 8 item 10), but it
    # must never carry such a command out.
    assert not isinstance(topics.parse(topic), topics.CommandTopic)


@pytest.mark.parametrize(
    ("value", "valid"),
    [("S1", True), ("a-b_c.D", True), ("x" * 36, True), ("x" * 37, False), ("", False),
     ("S 1", False), ("S/1", False), ("S+", False), ("S#", False), ("é", False), ("S:1", False)],
)  # fmt: skip
def test_ids(value: str, valid: bool) -> None:
    # §1.4: typeId / deviceId at most 36 chars, only a-z A-Z 0-9 - _ .
    assert topics.is_valid_id(value) is valid
