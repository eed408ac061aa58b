"""The systemd unit passes systemd's own checks and keeps its hardening."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "systemd" / "edged.service"
ANALYZE = shutil.which("systemd-analyze")

needs_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed here")


def _unit_with_existing_binaries(tmp_path: Path) -> Path:
    # verify wants the ExecStart binaries to exist here; the package installs /usr/bin/edged.
    text = UNIT.read_text().replace("/usr/bin/edged ", "/bin/true ")
    copy = tmp_path / "edged.service"
    copy.write_text(text)
    return copy


@needs_analyze
def test_unit_verifies_without_warnings(tmp_path: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(_unit_with_existing_binaries(tmp_path))],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0
    assert result.stdout + result.stderr == ""  # unknown keys are only warnings: fail on any


@needs_analyze
def test_unit_is_hardened(tmp_path: Path) -> None:
    assert ANALYZE is not None
    result = subprocess.run(
        [
            ANALYZE,
            "security",
            "--offline=yes",
            "--threshold=20",  # non-zero exit above an exposure of 2.0
            str(_unit_with_existing_binaries(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]
    score = re.search(r"Overall exposure level for edged.service: (\d+\.\d)", result.stdout)
    assert score is not None and float(score[1]) <= 2.0, result.stdout[-300:]


def test_unit_relaxations_keep_what_edged_needs() -> None:
    """Serial ports, the network, D-Bus (BLE, the privileged path) and the status socket."""
    assert _directives("RestrictAddressFamilies") == ["AF_UNIX AF_INET AF_INET6 AF_NETLINK"]
    assert {"char-ttyS rw", "char-ttyUSB rw", "char-ttyACM rw"} <= set(_directives("DeviceAllow"))
    assert _directives("RuntimeDirectory") == ["edged"]
    for absent in ("PrivateNetwork", "PrivateDevices", "PrivateUsers", "IPAddressDeny"):
        assert _directives(absent) == []
    assert _directives("SystemCallErrorNumber") == ["EPERM"]  # never SIGSYS for the daemon


def _directives(name: str) -> list[str]:
    return [
        line.split("=", 1)[1]
        for line in UNIT.read_text().splitlines()
        if line.startswith(f"{name}=")
    ]


def test_unit_runs_what_the_package_installs() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert _directives("ExecStart") == ["/usr/bin/edged run --config /etc/edged/edged.yaml"]
    assert _directives("RestartPreventExitStatus") == ["78"]


def test_a_bad_config_cannot_restart_loop() -> None:
    """RestartPreventExitStatus= covers the main process only: no step before it may exit 78."""
    assert _directives("ExecStartPre") == []
    assert _directives("ExecCondition") == []
    assert _directives("Restart") == ["on-failure"]


def test_run_without_the_token_file_exits_78_naming_it(tmp_path: Path) -> None:
    """What the unit does before /etc/edged/token exists: exit 78 and say which file is missing."""
    example = (REPO / "config" / "edged.example.yaml").read_text()
    missing = tmp_path / "token"
    config = tmp_path / "edged.yaml"
    config.write_text(example.replace("token_file: /etc/edged/token", f"token_file: {missing}"))
    result = subprocess.run(
        [sys.executable, "-m", "edged", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={k: v for k, v in os.environ.items() if k != "EDGED_TOKEN"},
    )
    assert result.returncode == 78, result.stderr
    assert "platform.token_file: cannot read the token file: No such file" in result.stderr
