"""Every command gets exactly one small, valid result; a repeated reqId is not carried out again.

The cases are the ones fuzzing found without a result (issue 8, item 10) and the broker's
redelivery of a QoS 1 command around a restart (item 11). The bridge and a real simulated
adapter carry the commands out.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import orjson
import pytest

from edged import codec, topics
from edged.adapters.base import DeviceSpec
from edged.adapters.simulated.adapter import SimulatedDevice
from edged.adapters.simulated.config import DeviceConfig
from edged.bridge import Bridge
from edged.commands import MAX_REQ_ID, CommandDesk, RecentRequests
from edged.model import Command, CommandStatus, DeviceIdentity, JSONValue, OutgoingMessage
from edged.outbox import PRIORITY_LANE, Outbox
from edged.text import safe
from tests.support.outbox import open_outbox, take_all

GW = DeviceIdentity("gw", "gw-1")
DEV = DeviceIdentity("sim", "s-1")


def collect_into(
    messages: list[OutgoingMessage],
) -> Callable[[DeviceIdentity, OutgoingMessage], bool]:
    def deliver(device: DeviceIdentity, message: OutgoingMessage) -> bool:
        assert message.topic.startswith(f"iot-2/type/{device.type_id}/id/{device.device_id}/")
        messages.append(message)
        return True

    return deliver


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    async with open_outbox(tmp_path) as box:
        yield box


def _bridge(outbox: Outbox, command_delay: float = 0.0) -> Bridge:
    section = DeviceConfig.model_validate(
        {"values": {"t": {"kind": "constant", "min": 5}}, "command_delay": command_delay}
    )
    device = SimulatedDevice(DeviceSpec(DEV, section, "reading", ("devices", 0)))
    return Bridge(GW, [device], outbox)


async def _results(bridge: Bridge, count: int = 1) -> list[dict[str, object]]:
    bodies = []
    for _ in range(count):
        entry = await asyncio.wait_for(bridge.outbox.next(), 5)
        assert (entry.lane, entry.device) == (PRIORITY_LANE, "sim/s-1")
        message = entry.message
        assert message.topic == "iot-2/type/sim/id/s-1/evt/cmdResult/fmt/json"
        assert len(message.payload) <= codec.MAX_PAYLOAD
        body = orjson.loads(message.payload)
        assert isinstance(body, dict)
        bodies.append(body)
    return bodies


def _send(bridge: Bridge, name: str, body: bytes, fmt: str = "json") -> None:
    parsed = topics.parse(f"iot-2/type/sim/id/s-1/cmd/{name}/fmt/{fmt}")
    assert isinstance(parsed, topics.CommandTopic | topics.MalformedCommandTopic)
    bridge.handle_command_message(parsed, body)


async def _settle(bridge: Bridge) -> None:
    await asyncio.wait_for(bridge.commands.wait_idle(), 5)


async def test_an_echo_too_large_for_the_platform_ends_in_a_small_failed_result(
    outbox: Outbox,
) -> None:
    bridge = _bridge(outbox)
    _send(bridge, "echo", orjson.dumps({"reqId": "big", "blob": "x" * 131_000}))
    (body,) = await _results(bridge)
    assert body["status"] == "failed" and body["reqId"] == "big"
    assert "exceeds the platform's 131072-byte limit" in str(body["error"])
    assert body["d"] == {}
    assert bridge.commands.counters["results_too_large"] == 1


async def test_a_reqid_too_long_to_echo_is_rejected_without_it(outbox: Outbox) -> None:
    bridge = _bridge(outbox)
    _send(bridge, "echo", orjson.dumps({"reqId": "r" * 140_000}))
    (body,) = await _results(bridge)
    assert body["status"] == "rejected" and body["reqId"] is None
    assert f"at most {MAX_REQ_ID} allowed" in str(body["error"])
    await _settle(bridge)
    assert take_all(bridge.outbox) == []


async def test_json_nested_too_deep_to_encode_ends_in_a_failed_result(
    outbox: Outbox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bridge = _bridge(outbox)
    deep = '{"reqId": "deep", "v": ' + "[" * 400 + "]" * 400 + "}"
    with caplog.at_level(logging.ERROR):
        _send(bridge, "echo", deep.encode())
        (body,) = await _results(bridge)
    assert body["status"] == "failed" and body["reqId"] == "deep"
    assert "could not be encoded as JSON" in str(body["error"])
    assert not caplog.records  # no "Task exception was never retrieved"


@pytest.mark.parametrize(
    ("name", "fmt"),
    [("sét", "json"), ("a b", "json"), ("", "json"), ("x" * 129, "json"), ("echo", "j$on")],
)
async def test_a_command_or_format_level_outside_the_character_set_is_rejected(
    outbox: Outbox, name: str, fmt: str
) -> None:
    bridge = _bridge(outbox)
    _send(bridge, name, b'{"reqId": "bad-level"}', fmt)
    (body,) = await _results(bridge)
    assert body["status"] == "rejected"
    assert body["command"] == safe(name, 128)
    assert "1-128 of A-Z a-z 0-9 _ . -" in str(body["error"])


async def test_a_repeat_while_the_first_runs_is_not_carried_out_again() -> None:
    calls: list[Command] = []

    async def execute(command: Command) -> Mapping[str, JSONValue] | None:
        calls.append(command)
        await asyncio.sleep(0.05)
        return {"pulses": len(calls)}

    delivered: list[OutgoingMessage] = []
    desk = CommandDesk(execute, collect_into(delivered))
    topic = topics.CommandTopic(DEV, "pulse", "json")
    desk.handle(topic, b'{"reqId": "p-1"}')
    desk.handle(topic, b'{"reqId": "p-1"}')  # redelivered by the broker
    await asyncio.wait_for(desk.wait_idle(), 5)
    assert len(calls) == 1
    assert [orjson.loads(m.payload)["d"] for m in delivered] == [{"pulses": 1}]
    assert desk.counters["commands_repeated"] == 1


async def test_a_repeat_after_the_first_ended_gets_the_first_result_again(
    outbox: Outbox,
) -> None:
    bridge = _bridge(outbox)
    _send(bridge, "set", b'{"reqId": "s-9", "t": 7}')
    (first,) = await _results(bridge)
    _send(bridge, "set", b'{"reqId": "s-9", "t": 8}')
    (again,) = await _results(bridge)
    assert again == first
    assert bridge.commands.counters["commands_ok"] == 1


async def test_requests_are_remembered_for_a_bounded_window() -> None:
    now = [0.0]
    recent = RecentRequests(seconds=60, entries=3, clock=lambda: now[0])
    for n in range(5):
        assert recent.check_in(DEV, f"r{n}") is None
    assert len(recent) == 3
    assert recent.check_in(DEV, "r0") is None  # forgotten: evicted by newer ones
    assert recent.check_in(DEV, "r4") is not None
    now[0] = 61.0
    assert recent.check_in(DEV, "r4") is None  # forgotten: too old
    assert recent.check_in(GW, "r4") is None  # reqIds are per device


async def test_commands_over_the_cap_get_a_failed_result_each() -> None:
    async def slow(command: Command) -> None:
        await asyncio.sleep(10)

    delivered: list[OutgoingMessage] = []
    desk = CommandDesk(slow, collect_into(delivered), max_concurrent=2)
    topic = topics.CommandTopic(DEV, "slow", "json")
    for n in range(5):
        desk.handle(topic, json.dumps({"reqId": f"c{n}"}).encode())
    assert desk.running == 2
    assert [orjson.loads(m.payload)["error"] for m in delivered] == [
        "too many commands in progress"
    ] * 3
    await desk.cancel_all()
    assert len(delivered) == 5  # the two cancelled ones are answered too
    assert {orjson.loads(m.payload)["error"] for m in delivered[3:]} == {
        "cancelled: the gateway is stopping"
    }


async def test_results_that_cannot_be_queued_are_counted() -> None:
    desk = CommandDesk(lambda command: asyncio.sleep(0), lambda device, m: False)
    desk.handle(topics.CommandTopic(DEV, "x", "json"), b"not json")
    assert desk.counters["results_dropped"] == 1
    assert desk.counters["commands_rejected"] == 1


def test_a_command_topic_with_an_unnameable_device_is_not_a_command() -> None:
    assert topics.parse("iot-2/type/sim/id/s 1/cmd/x/fmt/json") is None
    assert isinstance(
        topics.parse("iot-2/type/sim/id/s-1/cmd/x/fmt/"), topics.MalformedCommandTopic
    )


async def test_an_unnameable_command_is_logged_once_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    desk = CommandDesk(lambda command: asyncio.sleep(0), lambda device, m: True)
    with caplog.at_level(logging.DEBUG, logger="edged.commands"):
        desk.refuse_unnamed("iot-2/type/sim/id/bad id\nFAKE ERROR line/cmd/x/fmt/json")
        desk.refuse_unnamed("iot-2/type/sim/id/other/cmd/x/fmt/json")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "\n" not in warnings[0].getMessage()
    assert desk.counters["commands_unroutable"] == 2


def test_status_of_a_remembered_result_is_kept() -> None:
    recent = RecentRequests()
    recent.check_in(DEV, "r")
    recent.done(DEV, "r", CommandStatus.OK, b"{}")
    earlier = recent.check_in(DEV, "r")
    assert earlier is not None and earlier.outcome is CommandStatus.OK and earlier.payload == b"{}"
