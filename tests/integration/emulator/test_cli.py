"""``edged emulator`` as a real process: live lines, a command, the summary, exit 0 on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.integration.emulator.helpers import (
    BOILER_READING,
    GATEWAY,
    ORG,
    PATH,
    RawClient,
    event_body,
)
from tests.support.broker import APP_USER, Broker

pytestmark = pytest.mark.integration


class Output:
    """Collects a process's merged output line by line on a thread."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._process = process
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, name="cli-output")
        self._thread.start()

    def _read(self) -> None:
        assert self._process.stdout is not None
        for line in self._process.stdout:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for(self, text: str, timeout: float = 10) -> str:
        """The first line containing ``text``."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: next((line for line in self.lines if text in line), None), timeout
            )
        assert found is not None, f"no line with {text!r} in {self.lines}"
        return found

    def join(self) -> None:
        self._thread.join(10)


def test_cli_prints_live_lines_and_a_violation_summary(
    broker: Broker, gateway: RawClient, tmp_path: Path
) -> None:
    password_file = tmp_path / "app-password"
    password_file.write_text(broker.app_password + "\n")
    gateway.subscribe(f"iot-2/{PATH[GATEWAY]}/cmd/+/fmt/+")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "edged", "emulator",
            "--host", broker.host, "--port", str(broker.port), "--org", ORG,
            "--username", APP_USER, "--password-file", str(password_file),
            "--send-command", 'test-gw/gw-0001:ping:{"reqId":"p1"}',
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        env=env,
    )  # fmt: skip
    output = Output(process)
    try:
        output.wait_for("Ctrl-C to stop")
        command = gateway.next_message()
        assert orjson.loads(command.payload) == {"reqId": "p1"}
        gateway.publish(BOILER_READING, event_body(temperature=21.5))
        gateway.publish(BOILER_READING, event_body(temperature=9), retain=True)
        line = output.wait_for("temperature=21.5")
        output.wait_for("VIOLATION retain")
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.join()
        assert process.stdout is not None
        process.stdout.close()

    assert "← boiler-1 (modbus-meter)" in line
    assert "reading" in line
    assert any("→ gw-0001 (test-gw)" in text and "reqId=p1" in text for text in output.lines)
    assert "2 event(s) from 1 device(s), 1 command(s) sent, 0 DM exchange(s)" in output.lines
    assert "1 violation(s): retain x1" in output.lines
    assert broker.app_password not in "\n".join(output.lines)
    assert all("\x1b[" not in text for text in output.lines)  # NO_COLOR


def test_cli_exits_69_when_the_broker_refuses(broker: Broker, tmp_path: Path) -> None:
    password_file = tmp_path / "wrong"
    password_file.write_text("wrong\n")
    started = time.monotonic()
    result = subprocess.run(
        [
            sys.executable, "-m", "edged", "emulator", "--port", str(broker.port),
            "--org", ORG, "--username", APP_USER, "--password-file", str(password_file),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip
    assert result.returncode == 69
    assert "refused" in result.stderr
    assert time.monotonic() - started < 10


def test_cli_models_auto_registration(broker: Broker, gateway: RawClient, tmp_path: Path) -> None:
    password_file = tmp_path / "app-password"
    password_file.write_text(broker.app_password + "\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_COLOR": "1", "PYTHONIOENCODING": "utf-8"}
    process = subprocess.Popen(
        [
            sys.executable, "-m", "edged", "emulator",
            "--host", broker.host, "--port", str(broker.port), "--org", ORG,
            "--username", APP_USER, "--password-file", str(password_file),
            "--gateway", "test-gw/gw-0001", "--registration-delay", "30", "--max-pending", "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        encoding="utf-8",
        env=env,
    )  # fmt: skip
    output = Output(process)
    try:
        output.wait_for("Ctrl-C to stop")
        gateway.publish(f"iot-2/{PATH[GATEWAY]}/evt/status/fmt/json", event_body(up=True))
        gateway.publish(BOILER_READING, event_body(t=1))  # pending: 1 of at most 1
        gateway.publish("iot-2/type/pump/id/pump-7/evt/reading/fmt/json", event_body(t=2))
        line = output.wait_for("VIOLATION registration-cap")
        process.send_signal(signal.SIGINT)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output.join()
        assert process.stdout is not None
        process.stdout.close()

    assert "iot-2/type/pump/id/pump-7" in line
    assert "1 violation(s): registration-cap x1" in output.lines
