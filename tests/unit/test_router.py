"""The router: the subscription set names no attached device; each message reaches its owner."""

from __future__ import annotations

from typing import Any

import pytest

from edged import topics
from edged.model import DeviceIdentity
from edged.router import Router
from edged.uplink import IncomingMessage

GW = DeviceIdentity("gw", "GW1")
S1 = DeviceIdentity("sensor", "S1")
S2 = DeviceIdentity("sensor", "S2")
M1 = DeviceIdentity("meter", "M1")


class Calls:
    def __init__(self) -> None:
        self.seen: list[tuple[str, Any]] = []

    def router(self, devices: set[DeviceIdentity], dm: bool = True) -> Router:
        return Router(
            GW,
            devices,
            commands=lambda topic, payload: self.seen.append(("command", topic)),
            refuse_unnamed=lambda topic: self.seen.append(("unnamed", topic)),
            notify=lambda payload: self.seen.append(("notify", payload)),
            dm=(lambda topic, payload: self.seen.append(("dm", topic))) if dm else None,
            dm_filters=[("iotdm-1/type/+/id/+/#", 1)] if dm else [],
        )


def message(topic: str, payload: bytes = b"{}") -> IncomingMessage:
    return IncomingMessage(topic, payload, 1, False)


def test_one_command_filter_per_type_none_per_device() -> None:
    router = Calls().router({S1, S2, M1})
    assert router.subscriptions() == [
        ("iot-2/type/gw/id/GW1/cmd/+/fmt/+", 1),
        ("iot-2/type/meter/id/+/cmd/+/fmt/+", 1),
        ("iot-2/type/sensor/id/+/cmd/+/fmt/+", 1),
        ("iot-2/type/gw/id/GW1/notify", 1),
        ("iotdm-1/type/+/id/+/#", 1),
    ]


def test_the_gateways_own_filter_is_left_out_when_its_type_filter_covers_it() -> None:
    router = Calls().router({DeviceIdentity("gw", "child")}, dm=False)
    assert router.subscriptions() == [
        ("iot-2/type/gw/id/+/cmd/+/fmt/+", 1),
        ("iot-2/type/gw/id/GW1/notify", 1),
    ]


@pytest.mark.parametrize("device", [GW, S1])
def test_commands_for_the_gateway_and_its_devices_reach_the_bridge(device: DeviceIdentity) -> None:
    calls = Calls()
    calls.router({S1}).route(message(topics.command_topic(device, "reboot")))
    assert calls.seen == [("command", topics.CommandTopic(device, "reboot", "json"))]


def test_commands_for_devices_of_other_gateways_are_counted_and_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = Calls()
    router = calls.router({S1})
    for _ in range(3):
        router.route(message(topics.command_topic(S2, "reboot")))
    assert calls.seen == []
    assert router.counters["commands_for_other_devices"] == 3
    assert sum("sensor/S2" in r.getMessage() for r in caplog.records) == 1


def test_notify_dm_and_unnamed_commands_go_to_their_owners() -> None:
    calls = Calls()
    router = calls.router({S1})
    router.route(message(topics.notify_topic(GW), b'{"Message": "x"}'))
    router.route(message(topics.dm_platform_topic(S1, "mgmt/initiate/device/reboot")))
    router.route(message("iot-2/type/sensor/id/bad id/cmd/x/fmt/json"))
    assert calls.seen == [
        ("notify", b'{"Message": "x"}'),
        ("dm", topics.DMTopic(S1, "mgmt/initiate/device/reboot", to_device=True)),
        ("unnamed", "iot-2/type/sensor/id/bad id/cmd/x/fmt/json"),
    ]


def test_our_own_dm_topics_and_dm_without_an_agent_are_ignored() -> None:
    calls = Calls()
    router = calls.router({S1}, dm=False)
    router.route(message(topics.dm_device_topic(S1, "mgmt/manage")))
    router.route(message(topics.dm_platform_topic(S1, "observe")))
    assert calls.seen == []
    assert router.counters["ignored"] == 2
