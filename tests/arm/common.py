"""What the smoke suite and the figures share: the daemon as a process, its config, sd_notify.

The daemon is the installed ``edged`` command (``--edged`` to run another, e.g. a venv's, when
trying the scripts outside a chroot); the broker is :mod:`edged.devbroker` from the package:
Mosquitto from Debian with a generated config, password file, ACL and throwaway CA.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from edged.devbroker import Broker

ORG = "armtest"
GATEWAY = {"type": "pi-gateway", "id": "pi-gw-01"}


class CheckFailed(Exception):
    """A check of the suite did not hold; the message says what was seen instead."""


def say(text: str) -> None:
    """One progress line, flushed at once (the host script shows it as it comes)."""
    print(text, flush=True)


def write_config(
    directory: Path,
    broker: Broker,
    devices: Sequence[Mapping[str, Any]],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """An edged config for ``broker`` (TLS on loopback, token auth); returns its path."""
    directory.mkdir(parents=True, exist_ok=True)
    token = directory / "token"
    token.write_text(broker.gateway_token + "\n")
    token.chmod(0o600)
    config: dict[str, Any] = {
        "platform": {
            "org": ORG,
            "gateway": dict(GATEWAY),
            "host": "localhost",
            "port": broker.tls_port,
            "tls": True,
            "ca_file": str(broker.ca.ca_file),
            "token_file": str(token),
            "keepalive": 10,
            "reconnect": {"initial": 0.2, "max": 1, "refused_initial": 1, "refused_max": 4},
        },
        "status": {"interval": "1h"},
        "storage": {"path": str(directory / "outbox.sqlite")},
        "registration": {"confirm_after": 0.05},
        "control": {"socket": str(directory / "control.sock")},
        "devices": list(devices),
    }
    config.update(extra or {})
    path = directory / "edged.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def simulated(device_id: str, interval: float, **values: Any) -> dict[str, Any]:
    """A simulated device config; ``values`` are its signals, ``script`` its fixed readings."""
    script = values.pop("script", None)
    section: dict[str, Any] = {"interval": interval, "values": values}
    if script is not None:
        section["script"] = script
    return {"id": device_id, "type": "sim-sensor", "adapter": "simulated", "simulated": section}


class Daemon:
    """``edged run`` as a child process, its output collected as it comes."""

    def __init__(
        self,
        edged: Sequence[str],
        config: Path,
        *,
        log_level: str = "info",
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [*edged, "run", "--config", str(config), "--log-level", log_level],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
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
    def pid(self) -> int:
        """The daemon's process id."""
        return self.process.pid

    @property
    def output(self) -> str:
        """Everything it printed so far."""
        with self._lock:
            return "\n".join(self._lines)

    def tail(self, lines: int = 40) -> str:
        """Its last lines of output, for a failure message."""
        with self._lock:
            return "\n".join(self._lines[-lines:])

    def wait_for_output(self, pattern: str, timeout: float) -> None:
        """Wait until its output matches ``pattern``; raises :class:`CheckFailed`."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if regex.search(self.output):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise CheckFailed(f"the daemon never printed {pattern!r}; its output:\n{self.tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal it and wait for its exit code (SIGKILL after ``timeout``)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
                raise CheckFailed(
                    f"the daemon did not exit within {timeout:g} s of {signal.Signals(sig).name}; "
                    f"its output:\n{self.tail()}"
                ) from None
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        return self.process.returncode


class NotifyListener:
    """A datagram socket standing in for systemd's ``$NOTIFY_SOCKET``."""

    def __init__(self, path: Path) -> None:
        path.unlink(missing_ok=True)
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))

    def wait_ready(self, timeout: float) -> None:
        """Return once ``READY=1`` arrives; raises :class:`CheckFailed` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self._sock.settimeout(left)
            try:
                if b"READY=1" in self._sock.recv(4096).split(b"\n"):
                    return
            except TimeoutError:
                break
        raise CheckFailed(f"no READY=1 within {timeout:g} s")

    def close(self) -> None:
        """Close and remove the socket."""
        self._sock.close()
        self.path.unlink(missing_ok=True)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MiB (under qemu: the emulator's process, guest included)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise CheckFailed(f"no VmRSS for process {pid}")


def edged_command(value: str) -> list[str]:
    """``--edged COMMAND``: how to run edged; by default the installed ``edged`` on PATH."""
    words = value.split()
    if not words:
        raise CheckFailed("--edged is empty")
    return words
