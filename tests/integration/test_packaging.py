"""The systemd unit passes systemd's own checks and keeps its hardening."""

from __future__ import annotations

import shutil
import subprocess
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
            "--threshold=30",
            str(_unit_with_existing_binaries(tmp_path)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:]


def test_unit_runs_what_the_package_installs() -> None:
    text = UNIT.read_text()
    assert "Type=notify" in text and "WatchdogSec=" in text
    assert "ExecStart=/usr/bin/edged run --config /etc/edged/edged.yaml" in text
    assert "RestartPreventExitStatus=78" in text
