"""Running ``edged app`` against the test broker, as an operator would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.broker import APP_USER, Broker


def app_env(broker: Broker, app_id: str, home: Path, **extra: str) -> dict[str, str]:
    """The environment of ``edged app`` for the test broker's application user."""
    env = {
        **os.environ,
        "HOME": str(home),  # no ~/.config/edged/app.yaml of the machine's user
        "PYTHONUNBUFFERED": "1",
        "EDGED_APP_KEY": APP_USER,
        "EDGED_APP_TOKEN": broker.app_password,
        "EDGED_APP_HOST": broker.host,
        "EDGED_APP_PORT": str(broker.port),
        "EDGED_APP_TLS": "false",
        "EDGED_APP_ID": app_id,
    }
    env.update(extra)
    return env


def run_app(
    *args: str, env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run ``edged app ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "edged", "app", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def start_app(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``edged app ARGS`` (e.g. ``watch``) with its output on pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "edged", "app", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def read_until(stream: object, text: str, lines: list[str]) -> None:
    """Read lines of ``stream`` into ``lines`` until one contains ``text`` (or it ends)."""
    assert hasattr(stream, "readline")
    while True:
        line = stream.readline()
        if not line:
            raise AssertionError(f"{text!r} never came; got:\n" + "".join(lines))
        lines.append(line)
        if text in line:
            return
