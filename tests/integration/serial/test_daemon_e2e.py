"""The daemon (``edged run``) publishing serial readings end to end through the emulator."""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from edged.emulator import PlatformEmulator
from edged.model import DeviceIdentity
from tests.integration.serial.instruments import PtyPair, ThreadedInstrument, answer, nmea_epoch
from tests.support.broker import Broker
from tests.support.daemon import GATEWAY, running_daemon, write_config

pytestmark = [pytest.mark.serial, pytest.mark.integration]

GW = DeviceIdentity(GATEWAY["type"], GATEWAY["id"])
THERMO = DeviceIdentity("thermo", "th-1")


@pytest.fixture
def ptys() -> Iterator[tuple[PtyPair, PtyPair]]:
    first, second = PtyPair(), PtyPair()
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def devices(thermo: str, gps: str, missing: str) -> list[Mapping[str, Any]]:
    return [
        {
            "id": "th-1",
            "type": "thermo",
            "adapter": "serial",
            "serial": {
                "port": thermo,
                "baud": 115200,
                "parser": "kv",
                "poll": 0.2,
                "queries": [{"send": "MEAS?\r\n", "expect": "^T=", "event": "climate"}],
                "commands": {
                    "setpoint": {
                        "send": "SP {value:.1f}\r\n",
                        "reply": "text",
                        "expect": "^(OK|ERR)",
                        "error": "^ERR",
                    },
                },
            },
        },
        {
            "id": "gps-1",
            "type": "gps",
            "adapter": "serial",
            "event": "position",
            "serial": {"port": gps, "baud": 9600, "parser": "nmea", "location_source": True},
        },
        {
            "id": "scale-9",
            "type": "scale",
            "adapter": "serial",
            "serial": {"port": missing, "parser": "text"},
        },
    ]


def test_daemon_publishes_parsed_serial_readings(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator, ptys: tuple[PtyPair, PtyPair]
) -> None:
    thermo_pty, gps_pty = ptys
    config = write_config(
        tmp_path,
        broker,
        devices(thermo_pty.path, gps_pty.path, str(tmp_path / "ttyABSENT")),
        extra={"adapters": {"serial": {"reopen": {"initial": 0.1, "max": 0.5}}}},
    )
    instrument = ThreadedInstrument(thermo_pty.master, answer)
    gps = ThreadedInstrument(gps_pty.master, lambda line: None)
    try:
        with running_daemon(config) as daemon:
            # Polled replies.
            climate = emulator.wait_for_events(2, device="th-1", event="climate", timeout=15)
            assert climate[0].topic == "iot-2/type/thermo/id/th-1/evt/climate/fmt/json"
            assert climate[0].values == {"T": 21.5, "H": 40}
            # Unsolicited lines between polls use the device's parser and default event.
            instrument.write(b"T=19.25 H=55\r\n")
            [spontaneous] = emulator.wait_for_events(device="th-1", event="reading")
            assert spontaneous.values == {"T": 19.25, "H": 55}
            # NMEA with a bad checksum in the second epoch: fixes still come, junk does not.
            for index in range(4):
                for sentence in nmea_epoch(index, corrupt=index == 1):
                    gps.write(sentence)
                time.sleep(0.01)
            fixes = emulator.wait_for_events(3, device="gps-1", event="position")
            assert all(fix.values["valid"] for fix in fixes)
            assert fixes[0].values["latitude"] == pytest.approx(48 + 7.038 / 60)
            assert fixes[-1].values["time"].startswith("2024-05-01T12:00:0")
            # A command writes the filled template and returns the instrument's reply.
            emulator.send_command(THERMO, "setpoint", {"value": 22.4, "reqId": "c-1"})
            [result] = emulator.wait_for_events(
                device="th-1", event="cmdResult", predicate=lambda e: e.data.get("reqId") == "c-1"
            )
            assert result.data["status"] == "ok", result.data
            assert result.data["d"] == {"reply": "OK 22.4"}
            assert b"SP 22.4" in instrument.received
            # The device on a missing port does not stop anything; it is reported down.
            emulator.send_command(GW, "status", {"reqId": "s-1"})
            [status] = emulator.wait_for_events(
                device=GW.device_id,
                event="cmdResult",
                predicate=lambda e: e.data.get("reqId") == "s-1",
            )
            states = status.data["d"]["deviceStates"]
            assert states["scale/scale-9"] == "down"
            assert states["thermo/th-1"] == "online"
            assert daemon.process.poll() is None
        output = daemon.output
    finally:
        instrument.stop()
        gps.stop()
    warnings = [line for line in output.splitlines() if "WARNING" in line]
    assert len([line for line in warnings if "checksum mismatch" in line]) == 1, output
    assert len([line for line in warnings if "scale-9" in line]) == 1, output  # down, once
    assert emulator.violations == []
