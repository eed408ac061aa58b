"""BLE devices through the whole daemon: ``edged run`` against the BlueZ mock, a broker and the
platform emulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edged.emulator import PlatformEmulator
from edged.model import DeviceIdentity
from tests.integration.ble import bluez as bluez_mock
from tests.integration.ble.bluez import uuid16
from tests.support.broker import Broker
from tests.support.daemon import GATEWAY, running_daemon, write_config

pytestmark = [pytest.mark.ble, pytest.mark.integration]

GW = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])
VALVE = DeviceIdentity("ble-valve", "valve-1")
SETPOINT = "12345678-0000-4000-8000-00000000a001"

DEVICES: list[dict[str, Any]] = [
    {
        "id": "thermo-1",
        "type": "bthome",
        "adapter": "ble",
        "ble": {"address": "A4:C1:38:00:00:01", "bthome": True, "min_interval": 0},
    },
    {
        "id": "valve-1",
        "type": "ble-valve",
        "adapter": "ble",
        "ble": {
            "address": "F0:00:00:00:00:01",
            "rssi": False,
            "gatt": {
                "poll": "500ms",
                "characteristics": [
                    {"uuid": "2a6f", "fields": {"humidity": {"type": "uint16", "scale": 0.01}}}
                ],
                "commands": {"setpoint": {"uuid": SETPOINT, "type": "int16", "scale": 0.1}},
            },
        },
    },
    {
        "id": "ghost-1",
        "type": "ghost",
        "adapter": "ble",
        "ble": {"address": "0D:EA:D0:00:00:01", "timeout": "1s"},
    },
]


def test_ble_readings_commands_and_states_through_the_daemon(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    with bluez_mock.running() as bluez:
        bluez.add_adapter("hci0")
        thermo = bluez.add_device("A4:C1:38:00:00:01", "ATC_000001")
        bluez.advertise(thermo, service={uuid16(0xFCD2): bytes.fromhex("40000a015d02660803d912")})
        valve = bluez.add_device("F0:00:00:00:00:01", "Valve")
        service = bluez.add_service(valve, 0x0010, uuid16(0x181A))
        bluez.add_characteristic(
            service, 0x0011, uuid16(0x2A6F), ["read"], (4500).to_bytes(2, "little")
        )
        control = bluez.add_service(valve, 0x0020, "12345678-0000-4000-8000-00000000a000")
        setpoint = bluez.add_characteristic(control, 0x0021, SETPOINT, ["read", "write"], b"\0\0")
        config = write_config(
            tmp_path,
            broker,
            DEVICES,
            extra={"status": {"interval": "1s"}, "adapters": {"ble": {"silence_timeout": "1h"}}},
        )
        with running_daemon(config, env={"DBUS_SYSTEM_BUS_ADDRESS": bluez.address}) as daemon:
            [reading] = emulator.wait_for_events(device="thermo-1", event="reading")
            emulator.wait_for_events(device="valve-1", predicate=lambda e: "humidity" in e.values)
            emulator.send_command(VALVE, "setpoint", {"value": 21.5, "reqId": "ble-1"})
            [result] = emulator.wait_for_events(
                device="valve-1",
                event="cmdResult",
                predicate=lambda e: e.data.get("reqId") == "ble-1",
            )
            [status] = emulator.wait_for_events(
                device=GW,
                event="status",
                predicate=lambda e: e.values["deviceStates"].get("ghost/ghost-1") == "offline",
            )
            assert daemon.process.poll() is None
        writes = bluez.writes(setpoint)
    assert reading.topic == "iot-2/type/bthome/id/thermo-1/evt/reading/fmt/json"
    assert reading.values == {"battery": 93, "temperature": 21.5, "humidity": 48.25, "rssi": -60}
    assert result.data["status"] == "ok", result.data
    assert writes == [(b"\xd7\x00", "request")]
    assert status.values["deviceStates"]["bthome/thermo-1"] == "online"
    assert status.values["deviceStates"]["ble-valve/valve-1"] == "online"
    assert emulator.violations == []
