"""Benchmark: what the outbox costs the disk at a steady 100 events/s, batched against unbatched.

Each configuration runs in a child process under ``strace -f -c -e trace=fsync,fdatasync``: a
DiskThread receives one append per event at the given rate, and every saved event is deleted
20 ms later (as a PUBACK would). The child reads its own ``/proc/self/io`` around the steady
part and reports bytes handed to ``write()`` (``wchar``) and bytes it caused to be written to
storage (``write_bytes``, counted when a page cache page becomes dirty). The baseline, measured
in the same run, commits every event on its own (``commit_batch=1``). The fsyncs of opening and
closing the database alone (a run with no events) are subtracted.

    .venv/bin/python -m tests.bench.bench_outbox_disk [--seconds 10] [--rate 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from edged.outbox import DiskThread, OutboxStore

PAYLOAD = (
    b'{"d":{"temperature":21.53,"humidity":40.2,"pressure":1013.2,"battery":3.61,'
    b'"rssi":-71,"ok":true,"counter":%08d},"ts":"2026-05-09T07:35:25.123Z","seq":%08d}'
)


def _io() -> dict[str, int]:
    fields = (line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return {key: int(value) for key, value in fields}


async def _child(db: str, synchronous: str, batched: bool, rate: float, seconds: float) -> None:
    store = OutboxStore(db, synchronous=synchronous)
    disk = (
        DiskThread(store, commit_interval=0.1, commit_batch=1000)
        if batched
        else DiskThread(store, commit_interval=0.0, commit_batch=1)
    )
    disk.start()
    loop = asyncio.get_running_loop()
    events = round(rate * seconds)
    before = _io()
    started = loop.time()
    saved: list[asyncio.Future[list[int]]] = []

    def acknowledged(future: asyncio.Future[list[int]]) -> None:
        loop.call_later(0.02, disk.delete, future.result())

    for n in range(events):
        await asyncio.sleep(max(0.0, started + n / rate - loop.time()))
        topic = f"iot-2/type/meter/id/m{n % 20:03d}/evt/reading/fmt/json"
        future = disk.append([(2, f"meter/m{n % 20:03d}", topic, PAYLOAD % (n, n), 1, time.time())])
        future.add_done_callback(acknowledged)
        saved.append(future)
    await asyncio.gather(*saved)
    await asyncio.sleep(0.2)  # the last deletes are committed
    after = _io()
    elapsed = loop.time() - started
    commits = disk.commits
    await disk.close()
    print(
        json.dumps(
            {
                "events": events,
                "seconds": elapsed,
                "commits": commits,
                "wchar": after["wchar"] - before["wchar"],
                "write_bytes": after["write_bytes"] - before["write_bytes"],
            }
        )
    )


def _run(
    workdir: Path, synchronous: str, batched: bool, rate: float, seconds: float
) -> dict[str, float]:
    db = workdir / f"{synchronous}-{batched}-{seconds}.db"
    trace = workdir / "strace.txt"
    command = [
        sys.executable,
        "-m",
        "tests.bench.bench_outbox_disk",
        "--child",
        str(db),
        "--sync",
        synchronous,
        "--rate",
        str(rate),
        "--seconds",
        str(seconds),
    ] + (["--batched"] if batched else [])
    strace = shutil.which("strace")
    if strace:
        command = [strace, "-f", "-c", "-e", "trace=fsync,fdatasync", "-o", str(trace), *command]
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    result["fsyncs"] = _fsyncs(trace.read_text()) if strace else float("nan")
    return result


def _fsyncs(summary: str) -> float:
    calls = 0
    for line in summary.splitlines():
        match = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)$", line)
        if match:
            calls += int(match.group(1))
    return calls


def main() -> None:
    """Print fsyncs/s and bytes written per event, batched against one commit per event."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--child", metavar="DB")
    parser.add_argument("--sync", default="NORMAL")
    parser.add_argument("--batched", action="store_true")
    args = parser.parse_args()
    if args.child:
        asyncio.run(_child(args.child, args.sync, args.batched, args.rate, args.seconds))
        return
    if not shutil.which("strace"):
        print("strace not found: fsyncs are not counted")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR", "/var/tmp")) as tmp:
        workdir = Path(tmp)
        setup = _run(workdir, "FULL", True, args.rate, 0.0)["fsyncs"]
        print(
            f"{args.rate:.0f} events/s for {args.seconds:.0f} s each; each event deleted 20 ms after it is saved"
        )
        print(f"fsyncs of open + close alone: {setup:.0f} (subtracted)")
        print(
            f"{'synchronous':<12}{'commits':<22}{'commits/s':>10}{'fsyncs/s':>10}{'wchar B/ev':>12}{'disk B/ev':>11}"
        )
        for synchronous in ("NORMAL", "FULL"):
            rows = {}
            for batched in (False, True):
                r = _run(workdir, synchronous, batched, args.rate, args.seconds)
                rows[batched] = r
                label = "batched (0.1 s)" if batched else "per operation (base)"
                print(
                    f"{synchronous:<12}{label:<22}{r['commits'] / r['seconds']:>10.1f}"
                    f"{(r['fsyncs'] - setup) / r['seconds']:>10.2f}"
                    f"{r['wchar'] / r['events']:>12.0f}{r['write_bytes'] / r['events']:>11.0f}"
                )
            base, best = rows[False], rows[True]
            print(
                f"{'':<12}{'batched / baseline':<22}{best['commits'] / base['commits']:>10.2f}"
                f"{_ratio(best['fsyncs'] - setup, base['fsyncs'] - setup):>10}"
                f"{best['wchar'] / base['wchar']:>12.2f}{_ratio(best['write_bytes'], base['write_bytes']):>11}"
            )


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b > 0 else "n/a"


if __name__ == "__main__":
    main()
