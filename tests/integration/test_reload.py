"""Hot reload of the daemon as a process: SIGHUP and ``edged reload``, good and bad configs,
sd_notify on a real NOTIFY_SOCKET, the MQTT session kept."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edged.emulator import PlatformEmulator
from tests.support.broker import Broker
from tests.support.daemon import running_daemon, write_config

pytestmark = pytest.mark.integration


def _sim(device_id: str, **values: Any) -> dict[str, Any]:
    signals = values or {"n": {"kind": "counter", "max": 1_000_000}}
    return {
        "id": device_id,
        "type": "sim",
        "adapter": "simulated",
        "simulated": {"interval": 0.05, "values": signals},
    }


def _edged(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "edged", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _values(emulator: PlatformEmulator, device_id: str) -> list[Any]:
    return [e.values["n"] for e in emulator.events if e.device.device_id == device_id]


@pytest.fixture
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket as systemd's, and its NOTIFY_SOCKET address (abstract)."""
    name = f"edged-reload-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(0.2)
        yield server, "@" + name


def _received(server: socket.socket) -> list[str]:
    messages = []
    while True:
        try:
            messages.append(server.recv(4096).decode())
        except TimeoutError:
            return messages


def test_reload_applies_device_changes_keeps_the_session_and_refuses_a_bad_file(
    tmp_path: Path,
    broker: Broker,
    emulator: PlatformEmulator,
    notify_socket: tuple[socket.socket, str],
) -> None:
    server, address = notify_socket
    env = {"NOTIFY_SOCKET": address}
    control = tmp_path / "control.sock"
    config = write_config(tmp_path, broker, [_sim("s1"), _sim("s2"), _sim("s3")])
    with running_daemon(config, env) as daemon:
        for device in ("s1", "s2", "s3"):
            emulator.wait_for_events(3, device=device)

        # s2 removed, s3 changed (a constant now), s4 added; s1 untouched
        constant = {"n": {"kind": "constant", "min": 42, "max": 42}}
        write_config(tmp_path, broker, [_sim("s1"), _sim("s3", **constant), _sim("s4")])
        daemon.process.send_signal(signal.SIGHUP)
        daemon.wait_for_output(r"reloaded .*edged\.yaml: .*1 device\(s\) added \(sim/s4\)")
        emulator.wait_for_events(3, device="s4")
        emulator.wait_for_events(3, device="s3", predicate=lambda e: e.values["n"] == 42)
        s2_after_reload = len(_values(emulator, "s2"))
        count_s1 = len(_values(emulator, "s1"))
        emulator.wait_for(lambda: len(_values(emulator, "s1")) > count_s1 + 10, what="s1 goes on")
        assert len(_values(emulator, "s2")) == s2_after_reload  # s2 stopped
        # every reading s2 took was delivered, none lost at its removal
        s2 = _values(emulator, "s2")
        assert sorted(set(s2)) == list(range(len(set(s2))))
        # s1's runner was not restarted: its counter never went back to 0
        s1 = _values(emulator, "s1")
        assert s1 == sorted(s1) and s1.count(0) == 1

        # a bad file: every problem with file:line, the running config kept
        good_text = config.read_text()
        config.write_text(good_text.replace("interval: 1h", "interval: -5\n  colour: blue"))
        refused = _edged("reload", "--socket", str(control))
        assert refused.returncode == 1, refused.stdout
        problems = [line for line in refused.stderr.splitlines() if line.startswith(str(config))]
        assert len(problems) == 2
        assert all(re.match(rf"{re.escape(str(config))}:\d+: status\.", p) for p in problems)
        daemon.wait_for_output(rf"reload: {re.escape(str(config))}:\d+: status\.colour")
        count_s4 = len(_values(emulator, "s4"))
        emulator.wait_for(lambda: len(_values(emulator, "s4")) > count_s4 + 5, what="s4 goes on")

        # `edged reload` with a good file: a restart-only change is named, not applied
        config.write_text(good_text.replace("keepalive: 5", "keepalive: 7"))
        applied = _edged("reload", "--socket", str(control))
        assert applied.returncode == 0, applied.stderr
        assert "needs a restart: platform.keepalive" in applied.stdout

        status = json.loads(_edged("status", "--socket", str(control), "--json").stdout)
        assert status["report"]["uplink"]["reconnects"] == 0
        states = {entry["device"]: entry["state"] for entry in status["deviceDetail"]}
        assert set(states) == {"sim/s1", "sim/s3", "sim/s4"}
        assert daemon.process.poll() is None
    assert emulator.violations == []

    messages = _received(server)
    kinds = [m.split("\n")[0] for m in messages if not m.startswith(("STATUS=", "WATCHDOG"))]
    assert kinds == ["READY=1", *["RELOADING=1", "READY=1"] * 3, "STOPPING=1"]
    for message in messages:
        if message.startswith("RELOADING=1"):
            assert re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+\nSTATUS=.*", message)


def test_reload_says_clearly_when_the_daemon_is_not_running(tmp_path: Path) -> None:
    result = _edged("reload", "--socket", str(tmp_path / "control.sock"))
    assert result.returncode == 3
    assert "edged is not running" in result.stderr
