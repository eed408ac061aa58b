"""``edged demo`` end to end: it shows a manage, a location update and a custom action."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_the_demo_shows_a_manage_a_location_update_and_a_custom_action() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edged", "demo", "--seconds", "7"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1", "COLUMNS": "200"},
        check=False,
    )
    output = result.stdout
    assert result.returncode == 0, output + result.stderr
    lines = output.splitlines()
    assert any("mgmt/manage" in line and "lifetime=3600" in line for line in lines), output
    assert any("device/update/location" in line and "latitude=52.5163" in line for line in lines)
    assert "edged demo: location update: the gateway answered 204" in lines, output
    assert "edged demo: custom action demo-tools/hello: the gateway answered 200" in lines
    assert "/bin/echo succeeded" in output
    assert lines[-1] == "no violations"
