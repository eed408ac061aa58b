"""Fuzzed commands: each one to a nameable device gets exactly one small, valid result.

Commands go through the real topic parser, the bridge, a simulated adapter (whose ``echo``
sends the body back, so oversized and deeply nested results are reached too) and a real outbox
(a fresh one per example).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edged import codec, topics
from edged.adapters.base import DeviceSpec
from edged.adapters.simulated.adapter import SimulatedDevice
from edged.adapters.simulated.config import DeviceConfig
from edged.bridge import Bridge
from edged.model import DeviceIdentity
from edged.outbox import PRIORITY_LANE, Outbox
from tests.support.outbox import open_outbox

GW = DeviceIdentity("gw", "gw-1")
DEV = DeviceIdentity("sim", "s-1")

LEVEL = st.one_of(
    st.sampled_from(["echo", "set", "fail", "warp", "ping", "status"]),
    st.text(alphabet=st.characters(blacklist_characters="/+#\x00"), max_size=140),
)
REQ_ID = st.one_of(
    st.none(),
    st.text(max_size=300),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=9), max_size=3),
)


BODY = st.one_of(
    st.binary(max_size=200),
    st.builds(
        lambda req_id, depth, pad, key: (
            orjson.dumps({**({} if req_id is None else {key: req_id}), "pad": "x" * pad, "t": 1})[
                :-1
            ]
            + b',"v":'
            + b"[" * depth
            + b"]" * depth
            + b"}"
        ),
        REQ_ID,
        st.integers(min_value=0, max_value=600),
        st.sampled_from([0, 10, 140_000]),
        st.sampled_from(["reqId", "correlationId"]),
    ),
)


async def _run(directory: Path, commands: list[tuple[DeviceIdentity, str, str, bytes]]) -> int:
    async with open_outbox(directory) as outbox:
        return await _unanswered(outbox, commands)


async def _unanswered(
    outbox: Outbox, commands: list[tuple[DeviceIdentity, str, str, bytes]]
) -> int:
    section = DeviceConfig.model_validate({"values": {"t": {}}, "command_delay": 0})
    simulated = SimulatedDevice(DeviceSpec(DEV, section, "reading", ("devices", 0)))
    bridge = Bridge(GW, [simulated], outbox)
    bridge.gateway_commands["ping"] = lambda command: {"pong": True}
    routed = 0
    for device, name, fmt, body in commands:
        parsed = topics.parse(
            f"iot-2/type/{device.type_id}/id/{device.device_id}/cmd/{name}/fmt/{fmt}"
        )
        if isinstance(parsed, topics.CommandTopic | topics.MalformedCommandTopic):
            bridge.handle_command_message(parsed, body)
            routed += 1
        else:  # the name has no place in a topic level the broker would deliver
            assert "/" in name or "/" in fmt or not parsed
    await asyncio.wait_for(bridge.commands.wait_idle(), 10)
    results = 0
    while (entry := outbox.take_nowait()) is not None:
        assert entry.lane == PRIORITY_LANE
        message = entry.message
        assert len(message.payload) <= codec.MAX_PAYLOAD
        body = orjson.loads(message.payload)
        assert body["status"] in {"ok", "rejected", "failed", "unsupported", "timeout"}
        results += 1
    return routed - results


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from([DEV, GW, DeviceIdentity("sim", "ghost")]), LEVEL, LEVEL, BODY),
        min_size=1,
        max_size=6,
    )
)
def test_every_routed_command_gets_exactly_one_result(
    tmp_path_factory: pytest.TempPathFactory,
    commands: list[tuple[DeviceIdentity, str, str, bytes]],
) -> None:
    # A repeated reqId answers with the first result, which is still one result per message.
    # Each example gets an empty outbox of its own: nothing left from the one before.
    assert asyncio.run(_run(tmp_path_factory.mktemp("outbox"), commands)) == 0
