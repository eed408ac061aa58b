"""Topic building and parsing round-trip and reject what the grammar forbids."""

from __future__ import annotations

import pytest

from edged import topics
from edged.model import DeviceIdentity

DEV = DeviceIdentity("boiler", "b-1")


def test_event_topic_round_trip() -> None:
    topic = topics.event_topic(DEV, "reading")
    assert topic == "iot-2/type/boiler/id/b-1/evt/reading/fmt/json"
    assert topics.parse(topic) == topics.EventTopic(DEV, "reading", "json")


def test_command_topic_round_trip() -> None:
    topic = topics.command_topic(DEV, "set", "txt")
    assert topics.parse(topic) == topics.CommandTopic(DEV, "set", "txt")
    assert topics.command_filter(DEV) == "iot-2/type/boiler/id/b-1/cmd/+/fmt/+"


def test_notify_and_dm_topics() -> None:
    gw = DeviceIdentity("gw", "g1")
    assert topics.parse(topics.notify_topic(gw)) == topics.NotifyTopic(gw)
    request = topics.dm_platform_topic(DEV, "mgmt/initiate/device/reboot")
    assert topics.parse(request) == topics.DMTopic(
        DEV, "mgmt/initiate/device/reboot", to_device=True
    )
    response = topics.dm_device_topic(DEV, "response")
    assert topics.parse(response) == topics.DMTopic(DEV, "response", to_device=False)
    assert topics.dm_request_filter(DEV) == "iotdm-1/type/boiler/id/b-1/#"


@pytest.mark.parametrize(
    "topic",
    [
        "iot-2/type/boiler/id/b-1/evt/reading",
        "iot-2/type/boiler/id/b-1/evt/reading/fmt/json/extra",
        "iot-2/type/boiler/id/b 1/evt/reading/fmt/json",
        "iot-2/type/" + "x" * 37 + "/id/b-1/evt/e/fmt/json",
        "iot-2/type/boiler/id/b-1/evt/+/fmt/json",
        "iot-2/type/boiler/id/b-1/mon",
        "iotdm-1/type/boiler/id/b-1",
        "iotdm-1/type/boiler/id/b-1/response//x",
        "other/type/boiler/id/b-1/evt/e/fmt/json",
        "",
    ],
)
def test_parse_rejects_bad_topics(topic: str) -> None:
    assert topics.parse(topic) is None


def test_client_ids() -> None:
    assert topics.gateway_client_id("org1", DeviceIdentity("t", "i")) == "g:org1:t:i"
    assert topics.application_client_id("org1", "app") == "a:org1:app"
