"""``edged modbus read`` and ``edged modbus scan`` as a user runs them: no config, real server."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
import time

import pytest

from edged.adapters.modbus import compat

pytestmark = [pytest.mark.modbus, pytest.mark.integration]

Units = dict[int, compat.EmulatedUnit]


async def edged(*args: str) -> tuple[int, str, str]:
    """Run ``python -m edged modbus ARGS`` while this loop keeps serving the emulator.

    Polled rather than awaited through asyncio's child watcher, whose helper thread can
    outlive the test.
    """
    process = subprocess.Popen(  # noqa: ASYNC220 - polled below, see the docstring
        [sys.executable, "-m", "edged", "modbus", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        # Nothing to wait on but the pid: poll it.
        while process.poll() is None and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    finally:
        if process.poll() is None:
            process.kill()
        out, err = process.communicate()
    return process.returncode, out, err


async def test_read_prints_decoded_values(units: Units, tcp_server: compat.EmulatorServer) -> None:
    high, low = struct.unpack(">HH", struct.pack(">f", -1.5))
    units[3] = compat.EmulatedUnit(
        holding={100: high, 101: low, 102: 0x4048, 103: 0xF5C3}, coils={0: True}
    )
    url = f"tcp://127.0.0.1:{tcp_server.port}"
    code, out, err = await edged(
        "read", url, "--unit", "3", "--address", "100", "--count", "2", "--type", "float32"
    )
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{url} unit 3 holding"
    assert lines[1].split() == ["100", "float32", "-1.5", "0xbfc0", "0x0000"]
    assert lines[2].split()[:3] == [
        "102",
        "float32",
        str(struct.unpack(">f", bytes.fromhex("4048f5c3"))[0]),
    ]
    code, out, _ = await edged("read", url, "--unit", "3", "--address", "0", "--kind", "coil")
    assert code == 0
    assert out.splitlines()[1].split() == ["0", "bool", "true"]


async def test_read_reports_refusals_and_silence(
    units: Units, tcp_server: compat.EmulatorServer
) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 1})
    url = f"tcp://127.0.0.1:{tcp_server.port}"
    code, _, err = await edged("read", url, "--address", "5")
    assert code == 1
    assert "exception 2 (illegal data address)" in err
    code, _, err = await edged("read", url, "--unit", "9", "--address", "0", "--timeout", "0.1")
    assert code == 1
    assert "no answer from unit 9" in err
    code, _, err = await edged("read", "tcp://127.0.0.1:1", "--address", "0")
    assert code == 1
    assert "cannot connect" in err


async def test_scan_lists_the_units_that_answer(
    units: Units, tcp_server: compat.EmulatorServer
) -> None:
    units[2] = compat.EmulatedUnit(holding={0: 20})
    units[7] = compat.EmulatedUnit(input={0: 1})  # answers, but refuses holding register 0
    url = f"tcp://127.0.0.1:{tcp_server.port}"
    code, out, err = await edged("scan", url, "--units", "1-8", "--timeout", "0.05")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[1:] == [
        "unit   2: answers (holding 0 = 20)",
        "unit   7: answers (holding 0: exception 2 (illegal data address))",
        "2 unit(s) answered: 2, 7",
    ]
    code, out, _ = await edged("scan", url, "--units", "10-11", "--timeout", "0.05")
    assert code == 1
    assert out.splitlines()[-1] == "0 unit(s) answered: none"
