"""``edged ble scan`` as a field technician runs it, against the BlueZ mock."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.integration.ble import bluez as bluez_mock
from tests.integration.ble.bluez import uuid16

pytestmark = [pytest.mark.ble, pytest.mark.integration]


def edged(address: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": address}
    return subprocess.run(
        [sys.executable, "-m", "edged", "ble", "scan", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_scan_lists_devices_with_decoded_data() -> None:
    with bluez_mock.running() as bluez:
        bluez.add_adapter("hci0")
        thermo = bluez.add_device("A4:C1:38:00:00:01", "ATC_000001")
        bluez.advertise(
            thermo, service={uuid16(0xFCD2): bytes.fromhex("4000070266080364190163")}, rssi=-48
        )
        beacon = bluez.add_device("C0:FF:EE:00:00:02", "")
        bluez.advertise(beacon, manufacturer={0x0499: bytes.fromhex("050fa04e2001")}, rssi=-71)
        table = edged(bluez.address, "--seconds", "700ms")
        lines = edged(bluez.address, "--seconds", "0.7", "--json")
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert rows[0].split() == ["ADDRESS", "RSSI", "NAME", "ADVERTS", "DATA"]
    assert rows[1].startswith("A4:C1:38:00:00:01   -48  ATC_000001")
    assert rows[1].endswith("bthome temperature=21.5 humidity=65.0 battery=99")
    assert rows[2].startswith("C0:FF:EE:00:00:02   -71")
    assert rows[2].endswith("mfr 0x0499=050fa04e2001")
    assert rows[3] == "2 device(s) heard in 0.7 s on hci0"
    assert lines.returncode == 0, lines.stderr
    first = json.loads(lines.stdout.splitlines()[0])
    assert first["bthome"] == {"temperature": 21.5, "humidity": 65.0, "battery": 99}
    assert first["service_data"] == {"fcd2": "4000070266080364190163"}
    assert first["adverts"] >= 2


def test_scan_explains_a_missing_controller_and_bluetoothd() -> None:
    with bluez_mock.running() as bluez:
        bluez.add_adapter("hci0")
        missing = edged(bluez.address, "--seconds", "0.2", "--adapter", "hci1")
    with bluez_mock.running(bluez=False) as bus:
        no_daemon = edged(bus.address, "--seconds", "0.2")
    assert missing.returncode == 69
    assert "Bluetooth controller hci1 not found" in missing.stderr
    assert no_daemon.returncode == 69
    assert "bluetoothd is not running" in no_daemon.stderr
