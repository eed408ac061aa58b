"""Validating a config or building the command line must not import pyserial."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.serial

CODE = """
import sys
from edged.adapters.serial import cli, config, framing, nmea, parsers, templates  # noqa: F401
from edged.config import load_config_text
import os
os.environ["EDGED_TOKEN"] = "t"
load_config_text('''
platform: {org: o, gateway: {type: g, id: g1}}
devices:
  - {id: d, type: t, adapter: serial, serial: {port: /dev/ttyUSB0, parser: nmea}}
''')
assert "serial" not in sys.modules, "pyserial was imported"
import edged.adapters.serial.adapter  # noqa: F401  (the runtime does import it)
assert "serial" in sys.modules
"""


def test_config_and_cli_do_not_import_pyserial() -> None:
    result = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
