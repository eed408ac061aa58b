"""``edged serial monitor`` as a user runs it: a real process on a real pty."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.integration.serial.instruments import PtyPair, QueryInstrument, nmea_epoch

pytestmark = [pytest.mark.serial, pytest.mark.integration]


@contextlib.contextmanager
def monitor(*args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``edged serial monitor ARGS`` (plain Popen: asyncio's child watcher leaves a thread)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "edged", "serial", "monitor", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


async def finish(
    process: subprocess.Popen[bytes], fd: int = -1, lines: Sequence[bytes] = ()
) -> tuple[str, str]:
    """Wait for the monitor to exit, writing ``lines`` to ``fd`` meanwhile (the monitor drops
    what arrives before it has opened the port, so keep writing)."""
    async with asyncio.timeout(20):
        while process.poll() is None:
            for line in lines:
                os.write(fd, line)
            await asyncio.sleep(0.05)
    out, err = process.communicate()
    return out.decode(), err.decode()


async def test_monitor_prints_parsed_lines_and_frames(pty: PtyPair) -> None:
    with monitor(pty.path, "--parser", "kv", "--count", "3", "--show-frames") as process:
        out, err = await finish(process, pty.master, [b"T=21.5 H=40\r\n", b"junk\r\n"])
    assert process.returncode == 0, err
    readings = re.findall(r"^\d\d:\d\d:\d\d\.\d{3} frame (.*)$", out, re.MULTILINE)
    assert readings == ['{"T":21.5,"H":40}'] * 3
    assert "< T=21.5 H=40" in out
    assert "no key=value pairs: junk" in err  # every bad frame is shown (not --quiet)
    assert "# online" in err
    assert "# counters: " in err


async def test_monitor_nmea_with_bad_checksums(pty: PtyPair) -> None:
    sentences = [s for i in range(3) for s in nmea_epoch(i, corrupt=i == 1)]
    with monitor(pty.path, "--baud", "4800", "--parser", "nmea", "--count", "4") as process:
        out, err = await finish(process, pty.master, sentences)
    assert process.returncode == 0, err
    assert '"sentence":"GGA"' in out
    assert '"sentence":"RMC"' in out
    assert "checksum mismatch" in err


async def test_monitor_sends_queries(pty: PtyPair) -> None:
    instrument = QueryInstrument(pty.master)
    try:
        with monitor(
            pty.path,
            "--parser",
            "kv",
            "--send",
            "MEAS?\\r\\n",
            "--every",
            "50ms",
            "--count",
            "2",
            "--show-frames",
        ) as process:
            out, err = await finish(process)
    finally:
        instrument.stop()
    assert process.returncode == 0, err
    assert out.count('frame {"T":21.5,"H":40}') == 2
    assert "< T=21.50 H=40" in out  # replies are shown raw too
    assert instrument.received[:2] == [b"MEAS?", b"MEAS?"]


async def test_monitor_fails_fast_on_a_missing_port(tmp_path: Path) -> None:
    with monitor(str(tmp_path / "ttyNONE")) as process:
        _, err = await finish(process)
    assert process.returncode == 1
    assert "cannot open" in err
    assert "no such device" in err


async def test_monitor_rejects_bad_options(pty: PtyPair) -> None:
    with monitor(pty.path, "--parser", "regex", "--pattern", "no groups") as process:
        _, err = await finish(process)
    assert process.returncode == 2
    assert "named groups" in err
