"""The health report stays under the platform's limit at any size and survives adapter bugs."""

from __future__ import annotations

import logging
from collections.abc import Mapping

import pytest

from edged import codec
from edged.adapters.base import Adapter, ReadingSink
from edged.bridge import Bridge
from edged.health import MAX_LISTED_DEVICES, REPORT_BUDGET, HealthReport
from edged.model import DeviceIdentity, DeviceState, JSONValue
from edged.notifylog import NotifyLog
from edged.supervisor import Supervisor
from edged.uplink import Uplink
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


def report_for(adapter: Fleet) -> tuple[HealthReport, Bridge]:
    bridge = Bridge(GW, [adapter])
    uplink = Uplink(settings_for_port(1), lambda message: None)
    health = HealthReport(bridge, uplink, Supervisor([adapter], bridge), [adapter], NotifyLog(), {})
    return health, bridge


@pytest.mark.parametrize("count", [10, MAX_LISTED_DEVICES + 1, 5000])
def test_the_report_stays_under_the_limit_at_any_device_count(count: int) -> None:
    adapter = Fleet("fleet", count)
    health, bridge = report_for(adapter)
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


def test_oversized_detail_is_dropped_rather_than_the_report() -> None:
    adapter = Fleet("fleet", 3)
    adapter.extra = {f"c{n}": "x" * 100 for n in range(2000)}
    health, _ = report_for(adapter)
    report = health.build()
    assert report["truncated"] is True
    assert len(codec.encode_event(report, 0.0)) <= REPORT_BUDGET


def test_counters_that_raise_are_reported_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    adapter = Fleet("fleet", 2)
    adapter.broken = True
    health, _ = report_for(adapter)
    with caplog.at_level(logging.ERROR):
        first = health.build()
        health.build()
    assert first["adapters"]["fleet"]["countersError"] == "ZeroDivisionError: division by zero"
    assert len(caplog.records) == 1  # logged once while it keeps failing
    adapter.broken = False
    assert health.build()["adapters"]["fleet"]["counters"] == {"frames": 1}
