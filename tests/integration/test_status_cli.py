"""``edged status`` against the daemon running as a process: text, JSON, publish, not running."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edged.emulator import PlatformEmulator
from tests.support.broker import Broker
from tests.support.daemon import GATEWAY, running_daemon, write_config

pytestmark = pytest.mark.integration


def _status(socket: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", "status", "--socket", str(socket), *flags],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_status_shows_the_running_daemon_in_text_and_json(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    devices = [
        {
            "id": "s1",
            "type": "sim",
            "adapter": "simulated",
            "simulated": {"interval": 0.1, "values": {"n": {"kind": "counter"}}},
        },
        # a Modbus slave that is not there: shown as not online, with its reason
        {
            "id": "m1",
            "type": "meter",
            "adapter": "modbus",
            "modbus": {"url": "tcp://127.0.0.1:1", "points": {"t": {"address": 0}}},
        },
    ]
    socket = tmp_path / "control.sock"
    with running_daemon(write_config(tmp_path, broker, devices)) as daemon:
        emulator.wait_for_events(2, device="s1")
        text = _status(socket)
        as_json = _status(socket, "--json")
        published = _status(socket, "--publish")
        emulator.wait_for_events(1, device=GATEWAY["id"], event="status")
        assert daemon.process.poll() is None
    assert text.returncode == 0, text.stderr
    assert f"gateway {GATEWAY['type']}/{GATEWAY['id']}" in text.stdout
    assert "uplink:  connected" in text.stdout
    assert "meter/m1" in text.stdout  # not online: listed
    data = json.loads(as_json.stdout)
    assert as_json.returncode == 0
    states = {entry["device"]: entry for entry in data["deviceDetail"]}
    assert states["sim/s1"]["state"] == "online"
    assert states["sim/s1"]["registration"] == "registered"
    assert data["report"]["registration"]["counts"]["registered"] >= 1
    assert "dm" in data["report"]
    assert published.returncode == 0
    assert not socket.exists()  # removed at shutdown


def test_status_says_clearly_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    result = _status(tmp_path / "control.sock")
    assert result.returncode == 3
    assert "edged is not running" in result.stderr
    assert result.stdout == ""
