"""Modbus benchmarks, all baselines measured in the same run.

TCP on loopback, 1000 registers on the even addresses 0..1998 of one unit:

* requests per poll cycle on the wire against the planner's minimum (must be equal);
* poll time of the merged plan against one request per register;
* the poller's CPU time per transaction against a bare pymodbus loop sending the same requests.

RTU through ``modbus_wire.py``, a relay that paces bytes as a real line at the configured baud
(ptys deliver instantly): the fraction of the wire's limit the poller reaches at 9600 and
115200 baud. The limit of a cycle is its frames' characters at 11 bits each, plus the two
3.5-character silences per transaction that RTU requires (1.75 ms above 19200 baud).

Run: ``.venv/bin/python tests/bench/bench_modbus.py [--quick]``. Needs socat. The emulator
runs in a process of its own, so the CPU figures are the poller's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.adapters.base import DeviceSpec
from edged.adapters.modbus import compat
from edged.adapters.modbus.adapter import ModbusLine
from edged.adapters.modbus.config import BusConfig, DeviceConfig
from edged.adapters.modbus.planner import Block
from edged.adapters.modbus.url import parse_bus_url
from edged.model import DeviceIdentity, DeviceState, Reading

HERE = Path(__file__).resolve().parent
SPREAD = {f"r{a}": {"address": a} for a in range(0, 2000, 2)}  # 1000 registers over 0..1999
BLOCK = {f"r{a}": {"address": a} for a in range(250)}  # 250 registers: two full reads
SMALL = {f"r{a}": {"address": a} for a in range(0, 800, 100)}  # 8 lone registers: 8 reads


# ----------------------------------------------------------------------------------- plumbing


@dataclass
class Helper:
    """A helper process: the line it announced itself with, and what it printed at the end."""

    proc: subprocess.Popen[str]
    ready_line: str = ""
    final: str = ""


@contextlib.contextmanager
def process(*argv: str, ready: str | None = None) -> Iterator[Helper]:
    """Run a helper process; wait (10 s at most) for its ``ready`` line; terminate it after."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=None, text=True)
    helper = Helper(proc)
    try:
        if ready is not None:
            assert proc.stdout is not None
            readable, _, _ = select.select([proc.stdout], [], [], 10)
            helper.ready_line = proc.stdout.readline() if readable else ""
            if not helper.ready_line.startswith(ready):
                raise RuntimeError(f"{argv[1]} did not start: {helper.ready_line!r}")
        yield helper
    finally:
        proc.terminate()
        try:
            helper.final = proc.communicate(timeout=5)[0] or ""
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


@contextlib.contextmanager
def pty_pair(directory: Path, name: str) -> Iterator[tuple[str, str]]:
    """Two linked ptys made by socat."""
    a, b = str(directory / f"{name}A"), str(directory / f"{name}B")
    socat = shutil.which("socat")
    if socat is None:
        raise SystemExit("socat is needed for the RTU benchmark")
    with process(socat, f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"):
        deadline = time.monotonic() + 5
        while not (Path(a).exists() and Path(b).exists()):
            if time.monotonic() > deadline:
                raise RuntimeError("socat did not create the ptys")
            time.sleep(0.01)
        yield a, b


@dataclass
class Mark:
    """The state at one reading: when, how many requests so far, how much CPU so far."""

    at: float
    transactions: int
    cpu: float


@dataclass
class CycleSink:
    """Marks every reading; stops the run after ``target`` of them."""

    line: ModbusLine
    target: int
    marks: list[Mark] = field(default_factory=list)
    done: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit(self, reading: Reading) -> None:
        link = self.line.link
        assert link is not None
        self.marks.append(Mark(time.perf_counter(), link.stats.transactions, time.process_time()))
        if len(self.marks) >= self.target:
            self.done.set()

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        if state is DeviceState.OFFLINE:
            print(f"  warning: {device} went offline: {detail}", file=sys.stderr)


@dataclass
class PollResult:
    """What one measured run found."""

    plan: list[Block]
    cycles: int
    seconds: float
    transactions: int
    cpu: float

    @property
    def cycle_time(self) -> float:
        return self.seconds / self.cycles

    @property
    def requests_per_cycle(self) -> float:
        return self.transactions / self.cycles


async def poll(url: str, points: dict[str, Any], cycles: int, **device: Any) -> PollResult:
    """Poll one device back to back; measure ``cycles`` cycles after one warm-up cycle."""
    section = DeviceConfig.model_validate(
        {"url": url, "unit": 1, "interval": 0, "points": points, **device}
    )
    spec = DeviceSpec(DeviceIdentity("bench", "meter"), section, "reading", ("devices", 0))
    line = ModbusLine(BusConfig.model_validate({"url": url, "timeout": 0.5}), [spec])
    sink = CycleSink(line, cycles + 1)
    task = asyncio.create_task(line.run(sink))
    try:
        await asyncio.wait_for(sink.done.wait(), 600)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    first, last = sink.marks[0], sink.marks[-1]
    return PollResult(
        plan=line.pollers[0].full_plan(),
        cycles=len(sink.marks) - 1,
        seconds=last.at - first.at,
        transactions=last.transactions - first.transactions,
        cpu=last.cpu - first.cpu,
    )


async def bare_pymodbus(url: str, plan: list[Block], cycles: int) -> tuple[float, float]:
    """The same reads from a bare pymodbus client in a loop: (seconds, CPU seconds)."""
    client = compat.make_client(parse_bus_url(url), 3.0)
    await client.connect()
    try:
        start, cpu = time.perf_counter(), time.process_time()
        for _ in range(cycles):
            for block in plan:
                await compat.call(
                    client, "read_holding_registers", block.address, unit=1, count=block.count
                )
        return time.perf_counter() - start, time.process_time() - cpu
    finally:
        client.close()


# ---------------------------------------------------------------------------------- benchmarks


async def bench_tcp(quick: bool) -> None:
    print("== Modbus TCP on loopback: 1000 registers spread over 0..1999, one unit ==")
    with process(sys.executable, str(HERE / "modbus_emulator.py"), "tcp", ready="ready") as server:
        port = int(server.ready_line.split()[1])
        url = f"tcp://127.0.0.1:{port}"
        merged = await poll(url, SPREAD, 40 if quick else 200)
        naive = await poll(url, SPREAD, 2 if quick else 5, max_registers=1)
        bare_seconds, bare_cpu = await bare_pymodbus(url, merged.plan, 40 if quick else 200)
    bare_transactions = len(merged.plan) * (40 if quick else 200)
    minimum = len(merged.plan)
    print(
        f"planner minimum: {minimum} requests per cycle (one read covers at most 63 of the points)"
    )
    print(
        f"requests per cycle on the wire: {merged.requests_per_cycle:g} (equal: {merged.requests_per_cycle == minimum})"
    )
    print(
        f"poll time per cycle: merged {merged.cycle_time * 1000:.2f} ms, one request per register "
        f"{naive.cycle_time * 1000:.1f} ms ({naive.requests_per_cycle:g} requests): "
        f"merged is {naive.cycle_time / merged.cycle_time:.0f}x faster"
    )
    print(
        f"poller CPU per transaction: {merged.cpu / merged.transactions * 1e6:.0f} us with 1000 points "
        f"decoded per cycle ({merged.cpu / merged.cycles / 1000 * 1e6:.2f} us per point), "
        f"{naive.cpu / naive.transactions * 1e6:.0f} us for one-register reads"
    )
    print(
        f"bare pymodbus loop, same reads: {bare_cpu / bare_transactions * 1e6:.0f} us CPU and "
        f"{bare_seconds / bare_transactions * 1e6:.0f} us wall per transaction; the poller's wall time "
        f"per transaction is {merged.seconds / merged.transactions * 1e6:.0f} us "
        f"({merged.seconds / merged.transactions / (bare_seconds / bare_transactions):.2f}x bare)"
    )


def wire_limit(plan: list[Block], baud: int, bits: int = 11) -> float:
    """Seconds one cycle of ``plan`` needs at least on the wire."""
    gap = 0.00175 if baud > 19200 else 3.5 * bits / baud
    characters = sum(8 + 5 + 2 * block.count for block in plan)
    return characters * bits / baud + 2 * gap * len(plan)


async def bench_rtu(baud: int, name: str, points: dict[str, Any], cycles: int) -> None:
    """Poll through a fresh wire; print the cycle time against the wire's limit."""
    # Parity N with 2 stop bits is 11 bits a character, like 8E1; ptys here refuse a second
    # tcsetattr once even parity is set, which real UARTs do not.
    options = f"baudrate={baud}&parity=N&stopbits=2"
    gap = 0.00175 if baud > 19200 else 3.5 * 11 / baud
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        slave, slave_wire = stack.enter_context(pty_pair(directory, "slave"))
        master_wire, master = stack.enter_context(pty_pair(directory, "master"))
        wire_args = ["--a", master_wire, "--b", slave_wire, "--baud", str(baud), "--bits", "11"]
        wire = stack.enter_context(
            process(sys.executable, str(HERE / "modbus_wire.py"), *wire_args, ready="ready")
        )
        emulator_args = ["serial", slave, str(baud), "N", "2"]
        stack.enter_context(
            process(sys.executable, str(HERE / "modbus_emulator.py"), *emulator_args, ready="ready")
        )
        result = await poll(f"rtu://{master}?{options}", points, cycles)
    silences = json.loads(wire.final)
    limit = wire_limit(result.plan, baud)
    requests = len(result.plan)
    bytes_only = limit - 2 * gap * requests
    print(
        f"{baud:>6} baud, {name}: cycle {result.cycle_time * 1000:.1f} ms, limit "
        f"{limit * 1000:.1f} ms -> {limit / result.cycle_time:.1%} of the wire's limit "
        f"({bytes_only / result.cycle_time:.1%} of the bytes alone); "
        f"{result.requests_per_cycle:g} requests per cycle; silence before a request "
        f"{silences['master_silence'] * 1000:.2f} ms, before an answer "
        f"{silences['slave_silence'] * 1000:.2f} ms (3.5 characters: {gap * 1000:.2f} ms)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description="Modbus benchmarks")
    parser.add_argument("--quick", action="store_true", help="fewer cycles (a smoke run)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"pymodbus {compat.PYMODBUS_VERSION}, Python {sys.version.split()[0]}")
    await bench_tcp(args.quick)
    print("== RTU through a wire that paces bytes at the baud rate (11 bits a character) ==")
    for baud in (9600, 115200):
        for name, points, cycles in (
            ("two reads of 125 registers", BLOCK, 8 if baud < 19200 else 60),
            ("eight reads of 1 register", SMALL, 20 if baud < 19200 else 60),
        ):
            await bench_rtu(baud, name, points, max(3, cycles // 4) if args.quick else cycles)
    print(json.dumps({"done": True}))


if __name__ == "__main__":
    asyncio.run(main())
