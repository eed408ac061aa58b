"""The daemon (``edged run``) polling pymodbus's server and publishing through the emulator."""

from __future__ import annotations

import asyncio
import json
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from edged.emulator import PlatformEmulator
from edged.model import DeviceIdentity
from tests.integration.modbus.slow_device import SlowTcpDevice
from tests.support.broker import Broker
from tests.support.daemon import GATEWAY, running_daemon, write_config
from tests.support.ports import free_port

pytestmark = [pytest.mark.modbus, pytest.mark.integration]

GW = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])
METER = DeviceIdentity("meter", "meter-1")
POWER = struct.unpack(">HH", struct.pack(">f", 1.5))


class ModbusEmulator:
    """``emulator_process.py`` running in a child process."""

    def __init__(self, units: dict[int, dict[str, dict[int, Any]]]) -> None:
        script = Path(__file__).with_name("emulator_process.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), json.dumps(units)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        ready = self.process.stdout.readline().split()
        assert ready[:1] == ["ready"], ready
        self.port = int(ready[1])

    def ask(self, *command: Any) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        assert self.process.stdout is not None
        self.process.stdout.close()


@pytest.fixture
def modbus() -> Iterator[ModbusEmulator]:
    emulator = ModbusEmulator(
        {
            1: {"holding": {0: 215, 1: POWER[0], 2: POWER[1], 10: 0}, "coils": {0: True}},
            3: {"holding": {0: 7, 2: 9}},  # unit 3 lacks register 1
        }
    )
    try:
        yield emulator
    finally:
        emulator.stop()


def test_daemon_publishes_decoded_modbus_values(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator, modbus: ModbusEmulator
) -> None:
    plc = f"tcp://127.0.0.1:{modbus.port}"
    devices = [
        {
            "id": "meter-1",
            "type": "meter",
            "adapter": "modbus",
            "modbus": {
                "bus": "plc",
                "unit": 1,
                "interval": 0.1,
                "points": {
                    "temperature": {"address": 0, "type": "int16", "scale": 0.1, "unit": "°C"},
                    "power": {"address": 1, "type": "float32"},
                    "running": {"address": 0, "kind": "coil"},
                },
                "commands": {"setpoint": {"address": 10, "type": "int16", "scale": 0.1, "max": 30}},
            },
        },
        {
            "id": "meter-2",
            "type": "meter",
            "adapter": "modbus",
            "modbus": {"bus": "plc", "unit": 2, "interval": 0.1, "points": {"v": {"address": 0}}},
        },
        {
            "id": "meter-3",
            "type": "meter",
            "adapter": "modbus",
            "modbus": {
                "url": plc,
                "unit": 3,
                "interval": 0.1,
                "points": {"a": {"address": 0}, "b": {"address": 1}, "c": {"address": 2}},
            },
        },
    ]
    extra = {"adapters": {"modbus": {"buses": {"plc": {"url": plc, "timeout": "100ms"}}}}}
    config = write_config(tmp_path, broker, devices, extra=extra)
    with running_daemon(config) as daemon:
        [reading] = emulator.wait_for_events(device="meter-1", event="reading", timeout=15)
        assert reading.topic == "iot-2/type/meter/id/meter-1/evt/reading/fmt/json"
        assert reading.values == {
            "temperature": 21.5,
            "power": 1.5,
            "running": True,
            "_units": {"temperature": "°C"},
        }
        [refused] = emulator.wait_for_events(device="meter-3", event="reading")
        assert refused.values == {
            "a": 7,
            "c": 9,
            "_errors": {"b": {"code": 2, "error": "illegal data address"}},
        }
        emulator.send_command(METER, "setpoint", {"value": 22.5, "reqId": "c-1"})
        [done] = emulator.wait_for_events(
            device="meter-1", event="cmdResult", predicate=lambda e: e.data.get("reqId") == "c-1"
        )
        assert done.data["status"] == "ok", done.data
        assert done.data["d"] == {"written": {"kind": "holding", "address": 10, "registers": [225]}}
        assert modbus.ask("get", 1, "holding", 10) == 225
        emulator.send_command(METER, "setpoint", {"value": 31, "reqId": "c-2"})
        [refusal] = emulator.wait_for_events(
            device="meter-1", event="cmdResult", predicate=lambda e: e.data.get("reqId") == "c-2"
        )
        assert refusal.data["status"] == "rejected", refusal.data
        assert "above the maximum 30" in refusal.data["error"]
        assert modbus.ask("get", 1, "holding", 10) == 225  # nothing written
        modbus.ask("set", 1, "holding", 0, 230)
        emulator.wait_for_events(
            device="meter-1",
            event="reading",
            predicate=lambda e: e.values.get("temperature") == 23.0,
        )
        emulator.send_command(GW, "status", {"reqId": "s-1"})
        [status] = emulator.wait_for_events(
            device=GW.device_id, event="cmdResult", predicate=lambda e: e.data.get("reqId") == "s-1"
        )
        states = status.data["d"]["deviceStates"]
        assert states["meter/meter-1"] == "online"
        assert states["meter/meter-2"] == "offline"
        assert daemon.process.poll() is None
        output = daemon.output
    silent = [line for line in output.splitlines() if "WARNING" in line and "meter-2" in line]
    assert len(silent) == 1, output  # the dead unit is logged once
    assert emulator.violations == []


@contextmanager
def slow_device_in_thread(
    registers: Mapping[int, int], slow: Mapping[tuple[int, int], float]
) -> Iterator[SlowTcpDevice]:
    """A :class:`SlowTcpDevice` on an event loop of its own (the test thread blocks)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="slow-device", daemon=True)
    thread.start()
    device = SlowTcpDevice(registers, slow)
    try:
        asyncio.run_coroutine_threadsafe(device.start(), loop).result(5)
        yield device
    finally:
        asyncio.run_coroutine_threadsafe(device.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def test_daemon_is_quiet_about_pymodbus_and_counts_late_answers(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    """The daemon as deployed: logging set up first, then the adapter. pymodbus would log
    a refused connect (WARNING) and a late answer (ERROR, with frame dumps); none of its
    lines may reach the log, the late answer shows in the status event's counters, and the
    dead line is logged once by edged itself."""
    gone = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    registers = {0: 1, 1: 2, 100: 101, 101: 102}
    with slow_device_in_thread(registers, {(0, 3): 0.3}) as slow:
        plc = f"tcp://127.0.0.1:{slow.port}"
        points = {name: {"address": address} for name, address in
                  (("a0", 0), ("a1", 1), ("b0", 100), ("b1", 101))}  # fmt: skip
        devices = [
            {
                "id": "slow-1",
                "type": "meter",
                "adapter": "modbus",
                "modbus": {"url": plc, "unit": 1, "interval": 0.1, "timeout": "200ms",
                           "points": points},
            },
            {
                "id": "gone-1",
                "type": "meter",
                "adapter": "modbus",
                "modbus": {"url": gone, "unit": 1, "points": {"v": {"address": 0}}},
            },
        ]  # fmt: skip
        config = write_config(tmp_path, broker, devices)
        with running_daemon(config) as daemon:
            emulator.wait_for_events(
                6, device="slow-1", event="reading", predicate=lambda _: slow.late == 1
            )
            emulator.send_command(GW, "status", {"reqId": "s-1"})
            [status] = emulator.wait_for_events(
                device=GW.device_id,
                event="cmdResult",
                predicate=lambda e: e.data.get("reqId") == "s-1",
            )
            output = daemon.output
    adapters = status.data["d"]["adapters"]
    counters = adapters[f"modbus:{plc}"]["counters"]
    assert counters["late_answers"] == counters["timeouts"] >= 1, counters
    assert adapters[f"modbus:{gone}"]["counters"]["line_outages"] == 1
    readings = [e.values for e in emulator.events if e.event == "reading"]
    assert len(readings) >= 6
    assert all(values == {"a0": 1, "a1": 2, "b0": 101, "b1": 102} for values in readings)
    lines = output.splitlines()
    assert [line for line in lines if "pymodbus" in line or ">>>>>" in line] == [], output
    dead = [line for line in lines if "ERROR" in line and f"modbus:{gone}" in line]
    assert len(dead) == 1, output
    assert "cannot connect" in dead[0]
