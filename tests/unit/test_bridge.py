"""The bridge with real simulated adapters: events out, commands in, a result for every command."""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
import pytest

from edged import topics
from edged.adapters.base import DeviceSpec
from edged.adapters.simulated.adapter import SimulatedDevice
from edged.adapters.simulated.config import DeviceConfig
from edged.bridge import Bridge
from edged.model import DeviceIdentity, DeviceState, Reading
from edged.sendqueue import OutgoingMessage

GW = DeviceIdentity("gw", "gw-1")
DEV = DeviceIdentity("sim", "s-1")


def _bridge(**kwargs: object) -> tuple[Bridge, SimulatedDevice]:
    section = DeviceConfig.model_validate(
        {"values": {"t": {"kind": "constant", "min": 5}}, "command_delay": 0}
    )
    device = SimulatedDevice(DeviceSpec(DEV, section, "reading", ("devices", 0)))
    bridge = Bridge(GW, [device], **kwargs)  # type: ignore[arg-type]
    bridge.gateway_commands["ping"] = lambda command: {"pong": True}
    return bridge, device


async def _result(bridge: Bridge) -> dict[str, object]:
    message = await asyncio.wait_for(bridge.queue.get(), 5)
    parsed = topics.parse(message.topic)
    assert isinstance(parsed, topics.EventTopic) and parsed.event == "cmdResult"
    body = orjson.loads(message.payload)
    assert isinstance(body, dict)
    return body


async def test_reading_becomes_an_event() -> None:
    bridge, _ = _bridge()
    await bridge.emit(Reading(DEV, "reading", {"t": 21.5}, 1_700_000_000.25))
    message = bridge.queue.get_nowait()
    assert message == OutgoingMessage(
        "iot-2/type/sim/id/s-1/evt/reading/fmt/json",
        b'{"ts":"2023-11-14T22:13:20.250Z","d":{"t":21.5}}',
        1,
    )


async def test_command_round_trip_carries_the_correlation_id() -> None:
    bridge, device = _bridge()
    payload = orjson.dumps({"setpoint": 21.5, "reqId": "r-42"})
    bridge.handle_command_message(topics.CommandTopic(DEV, "set", "json"), payload)
    body = await _result(bridge)
    assert body["command"] == "set" and body["reqId"] == "r-42" and body["status"] == "ok"
    assert body["d"] == {"applied": {"setpoint": 21.5}}
    assert device.overrides == {"setpoint": 21.5}


@pytest.mark.parametrize(
    ("device", "name", "fmt", "payload", "status", "error"),
    [
        (DEV, "set", "json", b"{not json", "rejected", "the payload is not valid JSON"),
        (DEV, "set", "json", b"[1,2]", "rejected", "set needs a JSON object"),
        (DEV, "warp", "json", b"{}", "unsupported", "unknown command 'warp'"),
        (DEV, "fail", "json", b"{}", "failed", "simulated hardware failure"),
        (DeviceIdentity("sim", "ghost"), "set", "json", b"{}", "unsupported", "is not attached"),
        (GW, "reboot-now", "json", b"{}", "unsupported", "unknown gateway command"),
        (DEV, "set", "txt", b"\xff\xfe", "rejected", "set needs a JSON object"),
    ],
)
async def test_bad_commands_get_error_results(
    device: DeviceIdentity, name: str, fmt: str, payload: bytes, status: str, error: str
) -> None:
    bridge, _ = _bridge()
    bridge.handle_command_message(topics.CommandTopic(device, name, fmt), payload)
    body = await _result(bridge)
    assert body["status"] == status
    assert isinstance(body["error"], str) and error in body["error"]
    assert bridge.commands.counters[f"commands_{status}"] == 1


async def test_gateway_command_and_timeout() -> None:
    bridge, device = _bridge(command_timeout=0.05)
    bridge.handle_command_message(topics.CommandTopic(GW, "ping", "json"), b'{"reqId": 7}')
    body = await _result(bridge)
    assert body["status"] == "ok" and body["reqId"] == "7" and body["d"] == {"pong": True}
    slow = DeviceConfig.model_validate({"values": {"t": {}}, "command_delay": 1})
    device.spec = DeviceSpec(DEV, slow, "reading", ("devices", 0))
    bridge.handle_command_message(topics.CommandTopic(DEV, "echo", "json"), b"{}")
    body = await _result(bridge)
    assert body["status"] == "timeout"


async def test_oversize_reading_is_refused_and_counted() -> None:
    bridge, _ = _bridge()
    await bridge.emit(Reading(DEV, "reading", {"blob": "x" * 131072}, time.time()))
    assert bridge.queue.empty()
    assert bridge.counters["oversize_refused"] == 1
    await bridge.emit(Reading(DEV, "reading", {"blob": "x" * 1000}, time.time()))
    assert bridge.queue.qsize() == 1


async def test_full_queue_applies_backpressure_without_dropping() -> None:
    bridge, _ = _bridge(queue_size=2)
    for value in range(2):
        await bridge.emit(Reading(DEV, "reading", {"n": value}, time.time()))
    blocked = asyncio.create_task(bridge.emit(Reading(DEV, "reading", {"n": 2}, time.time())))
    await asyncio.sleep(0.05)
    assert not blocked.done()
    seen = [orjson.loads(bridge.queue.get_nowait().payload)["d"]["n"]]
    await asyncio.wait_for(blocked, 1)
    seen += [orjson.loads(bridge.queue.get_nowait().payload)["d"]["n"] for _ in range(2)]
    assert seen == [0, 1, 2]


async def test_state_transitions_are_tracked() -> None:
    bridge, _ = _bridge()
    assert bridge.device_counts()["starting"] == 1
    bridge.set_state(DEV, DeviceState.OFFLINE, "no answer")
    bridge.set_state(DEV, DeviceState.ONLINE)
    assert bridge.device_counts() == {"starting": 0, "online": 1, "offline": 0, "down": 0}


async def test_commands_for_a_device_whose_adapter_is_unavailable_fail_clearly() -> None:
    bridge, _ = _bridge()
    orphan = DeviceIdentity("ble", "tag-1")
    bridge.set_state(orphan, DeviceState.DOWN, "adapter ble unavailable: No module named 'bleak'")
    bridge.handle_command_message(topics.CommandTopic(orphan, "write", "json"), b"{}")
    body = await _result(bridge)
    assert body["status"] == "failed"
    assert (
        body["error"]
        == "device ble/tag-1 is down: adapter ble unavailable: No module named 'bleak'"
    )


async def test_a_reading_that_cannot_be_encoded_is_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge, _ = _bridge()
    deep: object = 1
    for _ in range(300):  # deeper than the encoder writes; a device can send this as JSON
        deep = [deep]
    with caplog.at_level(logging.WARNING, logger="edged.bridge"):
        for _ in range(3):
            await bridge.emit(Reading(DEV, "reading", {"v": deep}, 1_700_000_000.0))
        await bridge.emit(Reading(DEV, "reading", {"v": 1}, 1_700_000_000.0))
    assert bridge.counters["readings_unencodable"] == 3
    assert bridge.queue.qsize() == 1
    assert len(caplog.records) == 1


def test_a_state_detail_from_outside_is_logged_on_one_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge, _ = _bridge()
    with caplog.at_level(logging.WARNING, logger="edged.bridge"):
        bridge.set_state(DEV, DeviceState.OFFLINE, "bad frame\nERROR forged line")
    assert caplog.records[0].getMessage() == (
        "device sim/s-1 is offline: bad frame\\nERROR forged line"
    )
