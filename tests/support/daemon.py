"""Run ``edged run`` as a real subprocess against the test broker."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from tests.support.broker import Broker

GATEWAY = {"type": "test-gw", "id": "gw-0001"}
ORG = "testorg"


def write_config(
    directory: Path,
    broker: Broker,
    devices: Sequence[Mapping[str, Any]],
    *,
    tls: bool = False,
    token: str | None = None,
    platform: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write an edged config (and its token file) pointing at ``broker``; returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    token_file = directory / "token"
    token_file.write_text((broker.gateway_token if token is None else token) + "\n")
    token_file.chmod(0o600)
    platform_cfg: dict[str, Any] = {
        "org": ORG,
        "gateway": dict(GATEWAY),
        "token_file": str(token_file),
        "host": "localhost" if tls else broker.host,
        "port": broker.tls_port if tls else broker.port,
        "tls": tls,
        "keepalive": 5,
        "reconnect": {"initial": 0.2, "max": 2, "refused_initial": 1, "refused_max": 4},
    }
    if tls:
        platform_cfg["ca_file"] = str(broker.ca.ca_file)
    platform_cfg.update(platform or {})
    config: dict[str, Any] = {
        "platform": platform_cfg,
        "status": {"interval": "1h"},
        "storage": {"path": str(directory / "outbox.sqlite")},
        # A new device's first message is confirmed before the rest follow: keep that short.
        "registration": {"confirm_after": 0.05},
        "control": {"socket": str(directory / "control.sock")},
        "devices": devices,
    }
    config.update(extra or {})
    path = directory / "edged.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Daemon:
    """A running ``edged run`` process whose combined output is collected as it comes."""

    def __init__(self, config: Path, env: Mapping[str, str] | None = None) -> None:
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edged", "run", "--config", str(config), "--log-level", "debug"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=environment,
        )
        self._lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, name="daemon-output", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            with self._lock:
                self._lines.append(raw.decode(errors="replace").rstrip("\n"))

    @property
    def output(self) -> str:
        """Everything the daemon printed so far."""
        with self._lock:
            return "\n".join(self._lines)

    def wait_for_output(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """Wait until the output matches the regular expression ``pattern``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while time.monotonic() < deadline:
            match = regex.search(self.output)
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"daemon output never matched {pattern!r}; output:\n{self.output}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Signal the daemon and wait for it to exit; returns its exit code."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
                raise AssertionError(f"daemon did not exit within {timeout} s of {sig!r}") from None
        self._reader.join(5)
        assert self.process.stdout is not None
        self.process.stdout.close()
        return self.process.returncode


@contextmanager
def running_daemon(config: Path, env: Mapping[str, str] | None = None) -> Iterator[Daemon]:
    """Start the daemon, and always stop it (and its output reader) when the block ends."""
    daemon = Daemon(config, env)
    try:
        yield daemon
    finally:
        daemon.stop()
