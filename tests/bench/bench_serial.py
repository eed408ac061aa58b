"""Serial read path: CPU per 80-byte line and lines/s, against pyserial's readline, one run.

Run from the repository root:  .venv/bin/python -m tests.bench.bench_serial [--lines N] [--repeat R]

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


class CheckingSink:
    """Keeps each reading's ``seq`` (to check order and loss), not the readings themselves:
    a real bridge encodes and drops them, so holding 50,000 dicts would only add GC work."""

    def __init__(self, expected: int) -> None:
        self.seqs: list[object] = []
        self.expected = expected
        self.done = asyncio.Event()
        self.online = asyncio.Event()

    async def emit(self, reading: Reading) -> None:
        """Take one reading."""
        self.seqs.append(reading.values.get("seq"))
        if len(self.seqs) >= self.expected:
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
        sink = CheckingSink(count)
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
        seqs = sink.seqs
        ok = seqs == list(range(count)) if parser != "text" else len(seqs) == count
        return Result(name, count, len(seqs), cpu, wall, ok)
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
    parsed = 0
    for frame in frames:  # results dropped, as the adapter does once they are emitted
        parsed += len(parser.parse(frame))
    parsing = Result(
        "  kv parsing only, in memory", count, parsed, time.process_time() - cpu0, 0, True
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


def median(results: list[Result]) -> Result:
    """The run with the median CPU per line (all runs must have passed their checks)."""
    ordered = sorted(results, key=lambda result: result.cpu_us)
    chosen = ordered[len(ordered) // 2]
    chosen.ok = all(result.ok and result.received == result.lines for result in results)
    return chosen


async def main_async(args: argparse.Namespace) -> int:
    """Run every scenario ``--repeat`` times, interleaved, and print the medians."""
    count, paced = args.lines, args.paced_lines
    scenarios: list[tuple[str, Any, str]] = [
        ("edged kv parser (full adapter path)", "kv", "kv"),
        ("edged json parser", "json", "json"),
        ("edged regex parser", {"regex": {"pattern": r"seq=(?P<seq>\d+) t=(?P<t>\S+)"}}, "kv"),
        ("edged text parser", "text", "kv"),
    ]
    runs: dict[str, list[Result]] = {}
    for _ in range(args.repeat):  # interleaved, so background load hits every scenario alike
        runs.setdefault("pyserial", []).append(run_pyserial(count, 0))
        for name, parser, fmt in scenarios:
            runs.setdefault(name, []).append(await run_edged(name, parser, count, 0, fmt))
        runs.setdefault("slow", []).append(
            await run_edged("edged kv @ 115200 baud (144 lines/s)", "kv", paced // 4, 115200, "kv")
        )
        runs.setdefault("fast", []).append(
            await run_edged("edged kv @ 921600 baud (1152 lines/s)", "kv", paced, 921600, "kv")
        )
        runs.setdefault("pyserial paced", []).append(run_pyserial(paced, 921600))
    results = {name: median(items) for name, items in runs.items()}
    baseline = results["pyserial"]

    print(f"serial read path: {count} lines of 80 bytes through a pty; CPU of the reading process;")
    print(
        f"median of {args.repeat} interleaved runs; python {sys.version.split()[0]}, "
        f"{os.cpu_count()} CPUs\n"
    )
    print(
        f"{'scenario':44} {'CPU us/ln':>9} {'lines/s':>12} {'received':>19} {'check':>13}"
        "  pyserial/this"
    )
    for name, _, _ in scenarios:
        show(results[name], baseline)
    show(baseline)
    for result in in_memory(count):
        show(result)
    print("\npaced at real wire rates (each line arrives on its own: per-wakeup cost dominates)")
    show(results["slow"])
    show(results["fast"], results["pyserial paced"])
    show(results["pyserial paced"])
    kv = results[scenarios[0][0]]
    checks = all(result.ok for result in results.values())
    verdict = "PASS" if kv.cpu_us <= TARGET_US and checks else "FAIL"
    print(
        f"\ntarget <= {TARGET_US:g} us CPU per line at full speed, zero loss: {verdict} "
        f"(kv {kv.cpu_us:.2f} us/line, {baseline.cpu_us / kv.cpu_us:.0f}x less CPU than "
        f"pyserial readline at {baseline.cpu_us:.0f} us/line)"
    )
    return 0 if verdict == "PASS" else 1


def main() -> int:
    """Command line entry."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=30_000, help="lines per full-speed run")
    parser.add_argument("--paced-lines", type=int, default=2_000, help="lines at 921600 baud")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario (median)")
    return asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
