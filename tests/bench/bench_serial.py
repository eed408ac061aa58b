"""Serial read path: CPU per 80-byte line and lines/s, against pyserial's readline, one run.

Run from the repository root:  .venv/bin/python -m tests.bench.bench_serial [--lines N]

A separate writer process (tests/bench/serial_feed.py) pushes N lines into a pty as fast as the
pty accepts them (blocking writes: the pty's flow control holds the writer back, nothing is
dropped). The reading process is measured with time.process_time(): the adapter's real runner
(SerialDevice: add_reader, chunked os.read, framing, parsing, Reading objects, an awaited sink)
and, on the same data, pyserial's Serial.readline(). Paced runs at real baud rates show the
per-line cost when every line arrives on its own. Target: <= 10 us of CPU per line, no loss.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import time
import tty
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edged.adapters.base import AdapterContext, DeviceSpec
from edged.adapters.serial.adapter import SerialDevice
from edged.adapters.serial.config import DeviceConfig, Settings
from edged.adapters.serial.framing import LineFramer
from edged.adapters.serial.parsers import build_parser
from edged.model import DeviceIdentity, DeviceState, Reading
from tests.bench.serial_feed import lines

FEED = Path(__file__).with_name("serial_feed.py")
DEVICE = DeviceIdentity("bench", "serial")
TARGET_US = 10.0


@dataclass
class Result:
    """One scenario's figures."""

    name: str
    lines: int
    received: int
    cpu: float
    wall: float
    ok: bool

    @property
    def cpu_us(self) -> float:
        """CPU microseconds per line."""
        return self.cpu / max(self.received, 1) * 1e6


class Pty:
    """A raw pty pair; the reader opens ``path``, the writer process gets ``master``."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def feed(self, count: int, baud: int, fmt: str) -> subprocess.Popen[bytes]:
        """Start the writer process."""
        return subprocess.Popen(
            [sys.executable, str(FEED), str(self.master), str(count), str(baud), fmt],
            pass_fds=[self.master],
        )

    def close(self) -> None:
        """Close both ends."""
        os.close(self.master)
        os.close(self.slave)


class CollectingSink:
    """Keeps every reading (a list append: the cheapest honest consumer)."""

    def __init__(self, expected: int) -> None:
        self.readings: list[Reading] = []
        self.expected = expected
        self.done = asyncio.Event()
        self.online = asyncio.Event()

    async def emit(self, reading: Reading) -> None:
        """Take one reading."""
        self.readings.append(reading)
        if len(self.readings) >= self.expected:
            self.done.set()

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        """Note when the port is open."""
        if state is DeviceState.ONLINE:
            self.online.set()


async def run_edged(name: str, parser: Any, count: int, baud: int, fmt: str) -> Result:
    """The adapter's runner reading ``count`` lines."""
    pty = Pty()
    try:
        config = DeviceConfig.model_validate({"port": pty.path, "parser": parser})
        device = SerialDevice(
            DeviceSpec(DEVICE, config, "reading", ()), Settings(), AdapterContext(gateway=DEVICE)
        )
        sink = CollectingSink(count)
        task = asyncio.create_task(device.run(sink))
        await asyncio.wait_for(sink.online.wait(), 5)
        # Start the clock after spawning the writer: fork/exec costs the parent a few ms, and
        # what the writer sends meanwhile waits in the pty until this coroutine yields.
        writer = pty.feed(count, baud, fmt)
        cpu0, wall0 = time.process_time(), time.perf_counter()
        with contextlib.suppress(TimeoutError):  # a loss shows in the table
            await asyncio.wait_for(sink.done.wait(), 60 + count * 800 / max(baud, 1))
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        writer.wait(30)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        seqs = [reading.values.get("seq") for reading in sink.readings]
        ok = seqs == list(range(count)) if parser != "text" else len(seqs) == count
        return Result(name, count, len(sink.readings), cpu, wall, ok)
    finally:
        pty.close()


def run_pyserial(count: int, baud: int) -> Result:
    """pyserial's readline on the same data (it reads one byte per select+read)."""
    import serial

    pty = Pty()
    try:
        port = serial.Serial(pty.path, 115200, timeout=10)
        try:
            received: list[bytes] = []
            writer = pty.feed(count, baud, "kv")
            cpu0, wall0 = time.process_time(), time.perf_counter()
            for _ in range(count):
                line = port.readline()
                if not line:
                    break
                received.append(line)
            cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
            writer.wait(30)
        finally:
            port.close()
        ok = received == lines(count).splitlines(keepends=True)
        name = "pyserial readline (baseline)" if baud == 0 else f"pyserial readline @ {baud} baud"
        return Result(name, count, len(received), cpu, wall, ok)
    finally:
        pty.close()


def in_memory(count: int) -> list[Result]:
    """The pure parts alone: framing 4 KiB chunks, and the kv parser per line."""
    data = lines(count)
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    framer = LineFramer()
    cpu0 = time.process_time()
    frames = [frame for chunk in chunks for frame in framer.feed(chunk)]
    framing = Result(
        "  framing only, in memory", count, len(frames), time.process_time() - cpu0, 0, True
    )
    config = DeviceConfig.model_validate({"port": "/dev/null", "parser": "kv"})
    assert config.parser is not None
    parser = build_parser(config.parser, "utf-8")
    cpu0 = time.process_time()
    parsed = [parser.parse(frame) for frame in frames]
    parsing = Result(
        "  kv parsing only, in memory", count, len(parsed), time.process_time() - cpu0, 0, True
    )
    return [framing, parsing]


def show(result: Result, baseline: Result | None = None) -> None:
    """Print one row."""
    rate = f"{result.received / result.wall:12,.0f}" if result.wall else f"{'-':>12}"
    ratio = f"{baseline.cpu_us / result.cpu_us:8.1f}x" if baseline and result.cpu_us else ""
    loss = "ok" if result.ok and result.received == result.lines else "LOSS/MISMATCH"
    print(
        f"{result.name:44} {result.cpu_us:9.2f} {rate} {result.received:>9}/{result.lines:<9} "
        f"{loss:>13} {ratio}"
    )


async def main_async(args: argparse.Namespace) -> int:
    """Run every scenario and print the table."""
    count = args.lines
    header = f"{'scenario':44} {'CPU us/ln':>9} {'lines/s':>12} {'received':>19} {'check':>13}"
    print(f"serial read path: {count} lines of 80 bytes through a pty; CPU of the reading process")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs\n")
    print(header + "  pyserial/this")
    baseline = run_pyserial(count, 0)
    results = [
        await run_edged("edged kv parser (full adapter path)", "kv", count, 0, "kv"),
        await run_edged("edged json parser", "json", count, 0, "json"),
        await run_edged(
            "edged regex parser",
            {"regex": {"pattern": r"seq=(?P<seq>\d+) t=(?P<t>\S+)"}},
            count,
            0,
            "kv",
        ),
        await run_edged("edged text parser", "text", count, 0, "kv"),
    ]
    for result in results:
        show(result, baseline)
    show(baseline)
    for result in in_memory(count):
        show(result)
    print("\npaced at real wire rates (each line arrives on its own: per-wakeup cost dominates)")
    paced = [
        await run_edged(
            "edged kv @ 115200 baud (144 lines/s)", "kv", args.paced_lines // 4, 115200, "kv"
        ),
        await run_edged(
            "edged kv @ 921600 baud (1152 lines/s)", "kv", args.paced_lines, 921600, "kv"
        ),
    ]
    paced_baseline = run_pyserial(args.paced_lines, 921600)
    for result in paced[:-1]:
        show(result)
    show(paced[-1], paced_baseline)
    show(paced_baseline)
    kv = results[0]
    verdict = "PASS" if kv.cpu_us <= TARGET_US and all(r.ok for r in results + paced) else "FAIL"
    print(
        f"\ntarget <= {TARGET_US:g} us CPU per line at full speed, zero loss: {verdict} "
        f"(kv {kv.cpu_us:.2f} us/line, {baseline.cpu_us / kv.cpu_us:.0f}x less CPU than "
        f"pyserial readline at {baseline.cpu_us:.0f} us/line)"
    )
    return 0 if verdict == "PASS" else 1


def main() -> int:
    """Command line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000, help="lines per full-speed run")
    parser.add_argument("--paced-lines", type=int, default=2_000, help="lines at 921600 baud")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
