"""The bridge with real simulated adapters and a real outbox: events out, commands in, a result
for every command."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from edged import codec, topics
from edged.adapters.base import DeviceSpec
from edged.adapters.simulated.adapter import SimulatedDevice
from edged.adapters.simulated.config import DeviceConfig
from edged.bridge import Bridge
from edged.model import DeviceIdentity, DeviceState, OutgoingMessage, Reading
from edged.outbox import BULK_LANE, Outbox
from tests.support.outbox import open_outbox, take_all

GW = DeviceIdentity("gw", "gw-1")
DEV = DeviceIdentity("sim", "s-1")


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    async with open_outbox(tmp_path) as box:
        yield box


def _bridge(outbox: Outbox, **kwargs: object) -> tuple[Bridge, SimulatedDevice]:
    section = DeviceConfig.model_validate(
        {"values": {"t": {"kind": "constant", "min": 5}}, "command_delay": 0}
    )
    device = SimulatedDevice(DeviceSpec(DEV, section, "reading", ("devices", 0)))
    bridge = Bridge(GW, [device], outbox, **kwargs)  # type: ignore[arg-type]
    bridge.gateway_commands["ping"] = lambda command: {"pong": True}
    return bridge, device


async def _result(bridge: Bridge) -> dict[str, object]:
    entry = await asyncio.wait_for(bridge.outbox.next(), 5)
    parsed = topics.parse(entry.message.topic)
    assert isinstance(parsed, topics.EventTopic) and parsed.event == "cmdResult"
    body = orjson.loads(entry.message.payload)
    assert isinstance(body, dict)
    return body


def _event(message: OutgoingMessage) -> str:
    parsed = topics.parse(message.topic)
    assert isinstance(parsed, topics.EventTopic)
    return parsed.event


def _delivered() -> asyncio.Future[None]:
    future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    future.set_result(None)
    return future


async def test_reading_becomes_an_event(outbox: Outbox) -> None:
    bridge, _ = _bridge(outbox)
    await bridge.emit(Reading(DEV, "reading", {"t": 21.5}, 1_700_000_000.25))
    entry = outbox.take_nowait()
    assert entry is not None and (entry.lane, entry.device) == (BULK_LANE, "sim/s-1")
    assert entry.message == OutgoingMessage(
        "iot-2/type/sim/id/s-1/evt/reading/fmt/json",
        b'{"ts":"2023-11-14T22:13:20.250Z","d":{"t":21.5}}',
        1,
    )
    assert bridge.counters["readings"] == 1


async def test_command_results_and_alarm_events_overtake_earlier_telemetry(
    outbox: Outbox,
) -> None:
    bridge, _ = _bridge(outbox, alarm_events=["overheat"])
    await bridge.emit(Reading(DEV, "reading", {"t": 1}, 1_700_000_000.0))
    await bridge.emit(Reading(DEV, "overheat", {"t": 99}, 1_700_000_001.0))
    bridge.handle_command_message(topics.CommandTopic(GW, "ping", "json"), b"{}")
    await asyncio.wait_for(bridge.commands.wait_idle(), 5)
    assert [_event(m) for m in take_all(outbox)] == ["cmdResult", "overheat", "reading"]


async def test_command_round_trip_carries_the_correlation_id(outbox: Outbox) -> None:
    bridge, device = _bridge(outbox)
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
    outbox: Outbox,
    device: DeviceIdentity,
    name: str,
    fmt: str,
    payload: bytes,
    status: str,
    error: str,
) -> None:
    bridge, _ = _bridge(outbox)
    bridge.handle_command_message(topics.CommandTopic(device, name, fmt), payload)
    body = await _result(bridge)
    assert body["status"] == status
    assert isinstance(body["error"], str) and error in body["error"]
    assert bridge.commands.counters[f"commands_{status}"] == 1


async def test_gateway_command_and_timeout(outbox: Outbox) -> None:
    bridge, device = _bridge(outbox, command_timeout=0.05)
    bridge.handle_command_message(topics.CommandTopic(GW, "ping", "json"), b'{"reqId": 7}')
    body = await _result(bridge)
    assert body["status"] == "ok" and body["reqId"] == "7" and body["d"] == {"pong": True}
    slow = DeviceConfig.model_validate({"values": {"t": {}}, "command_delay": 1})
    device.spec = DeviceSpec(DEV, slow, "reading", ("devices", 0))
    bridge.handle_command_message(topics.CommandTopic(DEV, "echo", "json"), b"{}")
    body = await _result(bridge)
    assert body["status"] == "timeout"


async def test_oversize_reading_is_refused_and_counted(outbox: Outbox) -> None:
    bridge, _ = _bridge(outbox)
    await bridge.emit(Reading(DEV, "reading", {"blob": "x" * 131072}, time.time()))
    assert take_all(outbox) == [] and outbox.depth == 0
    assert bridge.counters["oversize_refused"] == 1
    await bridge.emit(Reading(DEV, "reading", {"blob": "x" * 1000}, time.time()))
    assert len(take_all(outbox)) == 1


async def test_an_oversize_gateway_event_is_refused_and_counted(outbox: Outbox) -> None:
    bridge, _ = _bridge(outbox)
    assert not bridge.publish_event(GW, "status", b"x" * (codec.MAX_PAYLOAD + 1), 1)
    assert bridge.counters["oversize_refused"] == 1 and outbox.depth == 0
    assert bridge.publish_event(GW, "status", b"{}", 0)
    assert take_all(outbox) == [
        OutgoingMessage("iot-2/type/gw/id/gw-1/evt/status/fmt/json", b"{}", 0)
    ]


async def test_emit_never_waits_and_loses_nothing_beyond_a_tiny_memory_budget(
    tmp_path: Path,
) -> None:
    # Was: a full in-memory queue made emit wait (backpressure into the adapters). Now the
    # backlog beyond ``memory_bytes`` (here room for about one reading) goes to disk.
    count = 200
    async with open_outbox(tmp_path, memory_bytes=500) as outbox:
        bridge, _ = _bridge(outbox)
        for n in range(count):
            step = bridge.emit(Reading(DEV, "reading", {"n": n}, 1_700_000_000.0 + n))
            with pytest.raises(StopIteration):
                step.send(None)  # done at its first step: it never suspended
        assert outbox.depth == count and bridge.counters["readings"] == count
        seen = []
        for _ in range(count):
            entry = await asyncio.wait_for(outbox.next(), 5)
            seen.append(orjson.loads(entry.message.payload)["d"]["n"])
            outbox.sent(entry, _delivered())
        await asyncio.wait_for(outbox.wait_empty(), 5)
    assert seen == list(range(count))
    assert outbox.counters["delivered"] == count and outbox.counters["dropped"] == 0


async def test_a_message_being_published_when_the_forwarder_stops_is_sent_first_again(
    outbox: Outbox,
) -> None:
    class Stalled:
        def __init__(self) -> None:
            self.entered = asyncio.Event()

        async def publish(self, topic: str, payload: bytes, qos: int) -> asyncio.Future[None]:
            self.entered.set()
            await asyncio.Event().wait()  # the MQTT session cannot take more
            raise AssertionError("unreachable")

    bridge, _ = _bridge(outbox)
    for n in range(2):
        await bridge.emit(Reading(DEV, "reading", {"n": n}, 1_700_000_000.0))
    publisher = Stalled()
    forwarder = asyncio.ensure_future(bridge.forward(publisher))
    await asyncio.wait_for(publisher.entered.wait(), 5)
    forwarder.cancel()
    await asyncio.gather(forwarder, return_exceptions=True)
    assert [orjson.loads(m.payload)["d"]["n"] for m in take_all(outbox)] == [0, 1]
    assert bridge.counters["forwarded"] == 0 and outbox.depth == 2


async def test_state_transitions_are_tracked(outbox: Outbox) -> None:
    bridge, _ = _bridge(outbox)
    assert bridge.device_counts()["starting"] == 1
    bridge.set_state(DEV, DeviceState.OFFLINE, "no answer")
    bridge.set_state(DEV, DeviceState.ONLINE)
    assert bridge.device_counts() == {"starting": 0, "online": 1, "offline": 0, "down": 0}


async def test_commands_for_a_device_whose_adapter_is_unavailable_fail_clearly(
    outbox: Outbox,
) -> None:
    bridge, _ = _bridge(outbox)
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
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    bridge, _ = _bridge(outbox)
    deep: object = 1
    for _ in range(300):  # deeper than the encoder writes; a device can send this as JSON
        deep = [deep]
    with caplog.at_level(logging.WARNING, logger="edged.bridge"):
        for _ in range(3):
            await bridge.emit(Reading(DEV, "reading", {"v": deep}, 1_700_000_000.0))
        await bridge.emit(Reading(DEV, "reading", {"v": 1}, 1_700_000_000.0))
    assert bridge.counters["readings_unencodable"] == 3
    assert len(take_all(outbox)) == 1
    assert len(caplog.records) == 1


async def test_a_state_detail_from_outside_is_logged_on_one_line(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    bridge, _ = _bridge(outbox)
    with caplog.at_level(logging.WARNING, logger="edged.bridge"):
        bridge.set_state(DEV, DeviceState.OFFLINE, "bad frame\nERROR forged line")
    assert caplog.records[0].getMessage() == (
        "device sim/s-1 is offline: bad frame\\nERROR forged line"
    )
