"""The health report stays under the platform's limit at any size, survives adapter bugs and
shows what the (real) outbox holds and dropped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from edged import codec
from edged.adapters.base import Adapter, ReadingSink
from edged.bridge import Bridge
from edged.health import MAX_LISTED_DEVICES, REPORT_BUDGET, HealthReport
from edged.model import DeviceIdentity, DeviceState, JSONValue, OutgoingMessage
from edged.outbox import BULK_LANE, Outbox
from edged.registrar.problems import NotifyProblems
from edged.supervisor import Supervisor
from edged.uplink import Uplink
from tests.support.outbox import open_outbox
from tests.support.uplink_settings import settings_for_port

GW = DeviceIdentity("gw", "gw-1")


class Fleet(Adapter):
    """Many devices, and counters that can be made to fail or to grow."""

    def __init__(self, name: str, count: int) -> None:
        super().__init__(name, [DeviceIdentity("t" * 36, f"{n:036d}") for n in range(count)])
        self.broken = False
        self.extra: dict[str, JSONValue] = {}

    async def run(self, sink: ReadingSink) -> None:
        raise NotImplementedError

    def counters(self) -> Mapping[str, JSONValue]:
        if self.broken:
            raise ZeroDivisionError("division by zero")
        return {"frames": 1, **self.extra}


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    async with open_outbox(tmp_path) as box:
        yield box


def report_for(adapter: Fleet, outbox: Outbox) -> tuple[HealthReport, Bridge]:
    bridge = Bridge(GW, [adapter], outbox)
    uplink = Uplink(settings_for_port(1), lambda message: None)
    health = HealthReport(
        bridge,
        uplink,
        Supervisor([adapter], bridge),
        [adapter],
        NotifyProblems(logging.getLogger("test")),
        {},
    )
    return health, bridge


@pytest.mark.parametrize("count", [10, MAX_LISTED_DEVICES + 1, 5000])
async def test_the_report_stays_under_the_limit_at_any_device_count(
    outbox: Outbox, count: int
) -> None:
    adapter = Fleet("fleet", count)
    health, bridge = report_for(adapter, outbox)
    for n, device in enumerate(sorted(adapter.devices)):
        bridge.set_state(device, DeviceState.ONLINE if n % 3 else DeviceState.OFFLINE)
    report = health.build()
    assert len(codec.encode_event(report, 0.0)) <= REPORT_BUDGET
    assert sum(report["devices"].values()) == count
    listed = report["deviceStates"]
    if count <= MAX_LISTED_DEVICES:
        assert len(listed) == count
    else:  # only devices that are not online, and the rest counted
        assert set(listed.values()) == {"offline"}
        assert len(listed) + report["deviceStatesOmitted"] == count


async def test_oversized_detail_is_dropped_rather_than_the_report(outbox: Outbox) -> None:
    adapter = Fleet("fleet", 3)
    adapter.extra = {f"c{n}": "x" * 100 for n in range(2000)}
    health, _ = report_for(adapter, outbox)
    report = health.build()
    assert report["truncated"] is True
    assert len(codec.encode_event(report, 0.0)) <= REPORT_BUDGET


async def test_counters_that_raise_are_reported_not_fatal(
    outbox: Outbox, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = Fleet("fleet", 2)
    adapter.broken = True
    health, _ = report_for(adapter, outbox)
    with caplog.at_level(logging.ERROR):
        first = health.build()
        health.build()
    assert first["adapters"]["fleet"]["countersError"] == "ZeroDivisionError: division by zero"
    assert len(caplog.records) == 1  # logged once while it keeps failing
    adapter.broken = False
    assert health.build()["adapters"]["fleet"]["counters"] == {"frames": 1}


def event(device: str, n: int) -> OutgoingMessage:
    return OutgoingMessage(f"iot-2/type/t/id/{device}/evt/reading/fmt/json", b"%03d" % n, 1)


async def test_the_report_and_status_line_show_what_the_outbox_holds(tmp_path: Path) -> None:
    now = [1000.0]
    async with open_outbox(tmp_path, clock=lambda: now[0]) as outbox:
        health, _ = report_for(Fleet("fleet", 1), outbox)
        for n in range(3):
            outbox.put(BULK_LANE, "a", event("a", n))
        now[0] += 12.0
        report = health.build()
        line = health.summary_line()
    size = len(event("a", 0).topic) + 3
    assert report["outbox"]["depth"] == 3 and report["outbox"]["bytes"] == 3 * size
    assert report["outbox"]["oldestAge"] == 12.0 and report["outbox"]["droppedBy"] == {}
    assert line == f"connecting; 0/1 devices online; outbox 3 ({3 * size} bytes, oldest 12 s)"


async def test_telemetry_dropped_by_the_byte_cap_is_counted_per_device(tmp_path: Path) -> None:
    size = len(event("a", 0).topic) + 3
    async with open_outbox(tmp_path, max_bytes=4 * size) as outbox:
        health, _ = report_for(Fleet("fleet", 1), outbox)
        for n in range(6):
            outbox.put(BULK_LANE, "a", event("a", n))
        outbox.put(BULK_LANE, "b", event("b", 0))
        for _ in range(500):  # the cap is enforced by a task of the outbox's own: no event
            if outbox.counters["dropped"] >= 3:
                break
            await asyncio.sleep(0.01)
        report = health.build()
    assert report["outbox"]["dropped"] == 3 and report["outbox"]["droppedBy"] == {"a": 3}
    assert report["outbox"]["depth"] == 4 and report["outbox"]["bytes"] == 4 * size
