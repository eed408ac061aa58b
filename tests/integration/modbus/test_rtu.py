"""RTU: pymodbus's serial server on a socat pty pair, a raw misbehaving slave, RTU over TCP."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tty
from collections.abc import AsyncIterator, Callable

import pytest

from edged.adapters.modbus import compat
from edged.adapters.modbus.adapter import ModbusLine
from edged.model import Command, DeviceIdentity, DeviceState
from tests.integration.modbus.helpers import (
    SocatPair,
    bus,
    crc16,
    rtu_registers_reply,
    running,
    spec,
)
from tests.support.sink import RecordingSink

pytestmark = [pytest.mark.modbus, pytest.mark.integration]

Units = dict[int, compat.EmulatedUnit]
# Parity N with two stop bits: 11 bits a character like 8E1, and this kernel's ptys refuse
# a second tcsetattr once even parity is set (EINVAL), which real UARTs do not.
BAUD = "baudrate=115200&parity=N&stopbits=2"


@contextlib.asynccontextmanager
async def serial_emulator(units: Units, path: str) -> AsyncIterator[compat.EmulatorServer]:
    server = await compat.serve_serial(
        compat.EmulatedBus(units), path, baudrate=115200, parity="N", stopbits=2
    )
    try:
        yield server
    finally:
        await server.stop()


async def test_rtu_line_with_a_dead_unit_and_a_write(
    units: Units, socat: SocatPair, caplog: pytest.LogCaptureFixture
) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 100, 1: 101, 2: 0})
    units[2] = compat.EmulatedUnit(input={10: 7}, coils={0: True})
    url = f"rtu://{socat.b}?{BAUD}"
    devices = [
        spec(
            "m1",
            url=url,
            unit=1,
            interval=0.02,
            points={"a": {"address": 0, "type": "int32"}},
            commands={"set": {"address": 2}},
        ),
        spec(
            "m2",
            url=url,
            unit=2,
            interval=0.02,
            points={"b": {"address": 10, "kind": "input"}, "c": {"address": 0, "kind": "coil"}},
        ),
        spec("m9", url=url, unit=9, interval=0.02, points={"z": {"address": 0}}),
    ]
    line = ModbusLine(bus(url, timeout=0.05), devices)
    sink = RecordingSink()
    caplog.set_level(logging.INFO, logger="edged.adapters.modbus")
    async with serial_emulator(units, socat.a), running(line, sink):
        await sink.wait_for(lambda: len(sink.of("m1")) >= 5 and len(sink.of("m2")) >= 5)
        result = await line.execute(Command(DeviceIdentity("meter", "m1"), "set", "json", b"", 42))
        assert result == {"written": {"kind": "holding", "address": 2, "registers": [42]}}
        assert sink.state_of("m9") is not None
        assert sink.state_of("m9")[0] is DeviceState.OFFLINE  # type: ignore[index]
    assert units[1].holding[2] == 42
    assert sink.of("m1")[-1].values == {"a": 100 * 65536 + 101}
    assert sink.of("m2")[-1].values == {"b": 7, "c": True}
    offline = sink.states_of("m9")
    assert offline == [DeviceState.STARTING, DeviceState.OFFLINE]
    assert [r.message for r in caplog.records if r.levelno > logging.DEBUG] == []


async def test_rtu_over_tcp(units: Units) -> None:
    units[4] = compat.EmulatedUnit(holding={7: 70})
    server = await compat.serve_tcp(compat.EmulatedBus(units), rtu_framing=True)
    url = f"rtu+tcp://127.0.0.1:{server.port}"
    line = ModbusLine(
        bus(url), [spec("m4", url=url, unit=4, interval=0.02, points={"v": {"address": 7}})]
    )
    sink = RecordingSink()
    try:
        async with running(line, sink):
            await sink.wait_for(lambda: len(sink.readings) >= 2)
    finally:
        await server.stop()
    assert sink.readings[-1].values == {"v": 70}


class RawSlave:
    """A slave on the far pty end that answers function-3 requests as a script says."""

    def __init__(self, path: str, answer: Callable[[int, bytes], bytes | None]) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self.answer = answer
        self.requests = 0
        self._buffer = b""
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        try:
            self._buffer += os.read(self.fd, 256)
        except BlockingIOError:
            return
        while len(self._buffer) >= 8:
            request, self._buffer = self._buffer[:8], self._buffer[8:]
            self.requests += 1
            reply = self.answer(self.requests, request)
            if reply:
                os.write(self.fd, reply)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self.fd)
        os.close(self.fd)


async def test_garbled_and_crc_failing_frames_are_retried_logged_once_and_recover(
    socat: SocatPair, caplog: pytest.LogCaptureFixture
) -> None:
    good = rtu_registers_reply(1, [1234])
    bad_crc = good[:-1] + bytes([good[-1] ^ 0xFF])
    garbage = b"\x00\xff\x13\x37\x42"
    broken = set(range(4, 12))  # requests 4..11: a burst of noise

    def answer(number: int, request: bytes) -> bytes | None:
        assert request[-2:] == crc16(request[:-2])
        if number == 2:
            return bad_crc  # a single bad frame: the retry fixes it
        if number in broken:
            return garbage if number % 2 else bad_crc
        return good

    url = f"rtu://{socat.b}?{BAUD}"
    device = spec("m1", url=url, unit=1, interval=0.02, points={"v": {"address": 0}})
    line = ModbusLine(bus(url, timeout=0.03, retries=1, quarantine_max=0.1), [device])
    sink = RecordingSink()
    caplog.set_level(logging.DEBUG, logger="edged.adapters.modbus")
    slave = RawSlave(socat.a, answer)
    try:
        async with running(line, sink):
            await sink.wait_for(lambda: slave.requests > 14 and len(sink.readings) >= 4, within=5)
    finally:
        slave.close()
    assert all(r.values == {"v": 1234} for r in sink.readings)
    silences = [r for r in caplog.records if "does not answer" in r.message]
    recoveries = [r for r in caplog.records if "answers again" in r.message]
    assert len(silences) == 1
    assert len(recoveries) == 1
    assert [r.message for r in caplog.records if r.levelno > logging.DEBUG] == []
    states = sink.states_of("m1")
    assert states == [
        DeviceState.STARTING,
        DeviceState.ONLINE,
        DeviceState.OFFLINE,
        DeviceState.ONLINE,
    ]


async def test_unplugged_adapter_is_logged_once_and_recovers(
    units: Units, socat: SocatPair, caplog: pytest.LogCaptureFixture
) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 5})
    url = f"rtu://{socat.b}?{BAUD}"
    device = spec("m1", url=url, unit=1, interval=0.02, points={"v": {"address": 0}})
    line = ModbusLine(bus(url, timeout=0.05, reconnect_max=0.2), [device], stable_after=0.3)
    sink = RecordingSink()
    caplog.set_level(logging.INFO, logger="edged.adapters.modbus")
    async with running(line, sink):
        async with serial_emulator(units, socat.a):
            await sink.wait_for(lambda: len(sink.readings) >= 2)
            socat.stop()  # both pty ends vanish, as when the USB adapter is pulled
            await sink.wait_for(lambda: sink.state_of("m1")[0] is DeviceState.OFFLINE)  # type: ignore[index]
            await asyncio.sleep(0.6)  # several failed reopen attempts
        count = len(sink.readings)
        socat.start()
        async with serial_emulator(units, socat.a):
            await sink.wait_for(lambda: len(sink.readings) > count + 1, within=5)
            await sink.wait_for(lambda: not line.retry.failing, "recovery confirmed", within=3)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.message for r in errors]
    assert sum("recovered" in r.message for r in caplog.records) == 1
    assert sink.state_of("m1") == (DeviceState.ONLINE, "")
