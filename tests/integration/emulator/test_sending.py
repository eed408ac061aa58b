"""Commands and notify messages the emulator sends, as a gateway receives them."""

from __future__ import annotations

import orjson
import pytest

from edged.emulator import EmulatorError, PlatformEmulator
from edged.emulator import notify as n
from tests.integration.emulator.helpers import (
    BOILER,
    BOILER_READING,
    GATEWAY,
    ORG,
    PATH,
    RawClient,
    event_body,
)
from tests.support.broker import APP_USER, Broker

pytestmark = pytest.mark.integration


def test_send_command_reaches_the_gateway(emu: PlatformEmulator, gateway: RawClient) -> None:
    gateway.subscribe(f"iot-2/{PATH[BOILER]}/cmd/+/fmt/+")

    emu.send_command(BOILER, "setpoint", {"value": 22.5, "reqId": "c1"})
    emu.send_command(BOILER, "raw", b"\x01\x02", fmt="bin", qos=0)

    first, second = gateway.next_message(), gateway.next_message()
    assert first.topic == "iot-2/type/modbus-meter/id/boiler-1/cmd/setpoint/fmt/json"
    assert orjson.loads(first.payload) == {"value": 22.5, "reqId": "c1"}
    assert (first.qos, first.retain) == (1, False)
    assert second.topic == f"iot-2/{PATH[BOILER]}/cmd/raw/fmt/bin"
    assert second.payload == b"\x01\x02"
    sent = emu.commands_sent
    assert [(c.command, c.format) for c in sent] == [("setpoint", "json"), ("raw", "bin")]
    assert sent[0].data == {"value": 22.5, "reqId": "c1"}


@pytest.mark.parametrize(
    ("command", "fmt"),
    [("set/point", "json"), ("", "json"), ("set+", "json"), ("set", "#"), ("set", "")],
)
def test_send_command_refuses_names_that_are_not_topic_levels(
    emu: PlatformEmulator, command: str, fmt: str
) -> None:
    with pytest.raises(ValueError, match="invalid command"):
        emu.send_command(BOILER, command, {}, fmt=fmt)
    assert emu.commands_sent == []


def test_send_command_takes_any_name_the_protocol_allows(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    # Command and format names are free text on the platform (PROTOCOL.md §2.1), wider than
    # edged's own rule: the emulator sends them so tests can see what edged does with them.
    gateway.subscribe(f"iot-2/{PATH[BOILER]}/cmd/+/fmt/+")
    long = "c" * 129
    for command in ("sét", "set point", long):
        emu.send_command(BOILER, command, {"reqId": command})
    topics = [gateway.next_message().topic for _ in range(3)]
    assert topics == [
        f"iot-2/{PATH[BOILER]}/cmd/sét/fmt/json",
        f"iot-2/{PATH[BOILER]}/cmd/set point/fmt/json",
        f"iot-2/{PATH[BOILER]}/cmd/{long}/fmt/json",
    ]


def test_sending_needs_a_started_emulator(broker: Broker) -> None:
    emulator = PlatformEmulator(
        broker.host, broker.port, ORG, username=APP_USER, password=broker.app_password
    )
    with pytest.raises(EmulatorError, match="not started"):
        emulator.send_command(BOILER, "setpoint", {})


def test_notify_has_the_documented_shape(emu: PlatformEmulator, gateway: RawClient) -> None:
    gateway.subscribe(f"iot-2/{PATH[GATEWAY]}/notify")
    gateway.publish(BOILER_READING, event_body(t=1))
    emu.wait_for_events()

    sent = emu.publish_notify(GATEWAY, device=BOILER, message=n.INVALID_DEVICE_TYPE, rc=21)

    message = gateway.next_message()
    assert message.topic == "iot-2/type/test-gw/id/gw-0001/notify"
    body = orjson.loads(message.payload)
    assert body == sent
    assert list(body) == ["Request", "Time", "Topic", "Type", "Id", "Client", "RC", "Message"]
    assert body["Request"] == "publish"
    assert body["Topic"] == BOILER_READING  # the device's last event topic
    assert (body["Type"], body["Id"]) == ("modbus-meter", "boiler-1")
    assert body["Client"] == "g:testorg:test-gw:gw-0001"
    assert (body["RC"], body["Message"]) == (21, "Device type is not valid.")
    assert body["Time"].endswith("Z")


def test_notify_for_an_invalid_topic_has_no_type_or_id(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.subscribe(f"iot-2/{PATH[GATEWAY]}/notify")

    emu.publish_notify(
        GATEWAY, message=n.TOPIC_NOT_ALLOWED, request="subscribe", topic="iot-2/bad", rc="x"
    )

    body = orjson.loads(gateway.next_message().payload)
    assert "Type" not in body
    assert "Id" not in body
    assert (body["Request"], body["Topic"], body["RC"]) == ("subscribe", "iot-2/bad", "x")
    with pytest.raises(ValueError, match="topic is required"):
        emu.publish_notify(GATEWAY, message="x")
    assert len(emu.notifies_sent) == 1
