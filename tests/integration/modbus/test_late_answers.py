"""Answers that arrive after their request timed out: dropped, counted, never taken as another's.

The device answers two reads late (longer than the timeout): one read followed by another of
the same size (registers 0-1, then 100-101: on RTU their answers look alike), and one followed
by a read of another size (register 200, then the next poll's 0-1). Without the answer gate,
pymodbus 3.8 takes a late TCP answer for the next request and every release does so on RTU:
the next read then gets the previous read's values, or "asked for 2 values, got 1".
"""

from __future__ import annotations

import logging

import pytest

from edged.adapters.modbus.adapter import ModbusLine
from edged.model import DeviceState
from tests.integration.modbus.helpers import SocatPair, bus, running, spec
from tests.integration.modbus.slow_device import SlowDevice, SlowRtuDevice, SlowTcpDevice
from tests.support.sink import RecordingSink

pytestmark = [pytest.mark.modbus, pytest.mark.integration]

REGISTERS = {0: 1, 1: 2, 100: 101, 101: 102, 200: 201}
EXPECTED = {"a0": 1, "a1": 2, "b0": 101, "b1": 102, "c": 201}
POINTS = {name: {"address": address} for name, address in
          (("a0", 0), ("a1", 1), ("b0", 100), ("b1", 101), ("c", 200))}  # fmt: skip
LATE = 0.3  # seconds: after the timeout (0.2), and the retry is answered in time
SLOW = {(0, 3): LATE, (200, 5): LATE}  # the 3rd read of 0-1, the 5th read of 200
BAUD = "baudrate=115200&parity=N&stopbits=2"  # see test_rtu.py


async def check_late_answers_are_dropped(
    url: str, device: SlowDevice, sink: RecordingSink, caplog: pytest.LogCaptureFixture
) -> None:
    line = ModbusLine(
        bus(url, timeout=0.2, retries=1),
        [spec("m1", url=url, unit=1, interval=0.02, points=POINTS)],
    )
    logging.getLogger("pymodbus").setLevel(logging.WARNING)  # the conftest silences it
    caplog.set_level(logging.DEBUG, logger="edged.adapters.modbus")
    async with running(line, sink):
        await sink.wait_for(lambda: device.late == 2, "both late answers sent", within=10)
        polls = line.pollers[0].cycles
        await sink.wait_for(lambda: line.pollers[0].cycles >= polls + 5, "five more polls")
    counters = line.counters()
    # Each timed-out read's answer came late and was dropped: two, unless the machine stalled.
    assert counters["late_answers"] == counters["timeouts"] >= 2, counters
    assert counters["bad_answers"] == 0, counters
    # No value from another read: every reading carries exactly the right values.
    assert len(sink.readings) >= 8
    wrong = [r.values for r in sink.readings if dict(r.values) != EXPECTED]
    assert wrong == []
    # The late answers never made the device look silent or garbled.
    assert sink.states_of("m1") == [DeviceState.STARTING, DeviceState.ONLINE]
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    dropped = [r for r in caplog.records if "dropped a late answer" in r.getMessage()]
    assert len(dropped) == counters["late_answers"]


async def test_late_tcp_answers_are_dropped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    device = SlowTcpDevice(REGISTERS, SLOW)
    await device.start()
    try:
        url = f"tcp://127.0.0.1:{device.port}"
        await check_late_answers_are_dropped(url, device, RecordingSink(), caplog)
    finally:
        await device.close()


async def test_late_rtu_answers_are_dropped_and_counted(
    socat: SocatPair, caplog: pytest.LogCaptureFixture
) -> None:
    device = SlowRtuDevice(socat.a, REGISTERS, SLOW)
    try:
        url = f"rtu://{socat.b}?{BAUD}"
        await check_late_answers_are_dropped(url, device, RecordingSink(), caplog)
    finally:
        await device.close()
