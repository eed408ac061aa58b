"""Benchmark: memory held by a backlog in the outbox (the cost of an outage, per event).

Readings go through the real bridge into a real outbox (the daemon's default storage settings
unless ``--memory-bytes`` is given, a database in a temporary directory) while nothing takes
them, as during an outage. Two runs of ``--events`` readings each, on fresh databases:

* RSS: the process's resident memory before the first reading and once the backlog is stored,
  and its peak in between (``VmHWM``, reset through ``/proc/self/clear_refs`` where allowed);
* tracemalloc: the bytes Python objects hold once the backlog is stored (run second, since
  tracing costs memory of its own).

The baseline, from the same run, is the topic and payload bytes of the events: what keeping
them in memory would cost at the very least. The producer yields to the event loop every
``--chunk`` readings, as an adapter does between reads, so the disk thread's answers are taken
in as they come; the backlog beyond ``storage.memory_bytes`` is then on disk only. The disk
thread's commits during the emission are counted (it competes with the busy loop for the GIL).

    .venv/bin/python -m tests.bench.bench_queue_memory [--events 100000] [--chunk 100]
        [--memory-bytes N]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import tempfile
import time
import tracemalloc
from pathlib import Path

import orjson

from edged.bridge import Bridge
from edged.config.models import StorageConfig
from edged.model import DeviceIdentity, Reading
from edged.outbox import DiskThread, Outbox, OutboxStore

MIB = 1024 * 1024
TARGET_RSS_GROWTH = 10 * MIB
"""Issue 9: 100,000 queued events must not grow RSS by more than about this."""


def _status(field: str) -> int:
    """A ``kB`` field of /proc/self/status, in bytes."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise KeyError(field)


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


async def _backlog(
    directory: Path, events: int, chunk: int, memory_bytes: int, measure: str
) -> dict[str, float]:
    """Put ``events`` readings through a Bridge into a fresh outbox; memory figures in bytes."""
    defaults = StorageConfig()
    disk = DiskThread(
        OutboxStore(str(directory / "outbox.sqlite"), synchronous=defaults.synchronous.upper()),
        commit_interval=defaults.commit_interval,
        commit_batch=defaults.commit_batch,
    )
    outbox = Outbox(disk, max_bytes=defaults.max_bytes, memory_bytes=memory_bytes)
    await outbox.start()
    try:
        bridge = Bridge(DeviceIdentity("gw", "gw-1"), [], outbox)
        devices = [DeviceIdentity("meter-type", f"meter-{n:04d}") for n in range(100)]
        gc.collect()
        figures: dict[str, float] = {}
        if measure == "tracemalloc":
            tracemalloc.start()
            start = tracemalloc.get_traced_memory()[0]
        else:
            figures["peak_reset"] = _reset_peak()
            start = _status("VmRSS")
        began = time.perf_counter()
        for n in range(events):
            values = {"temperature": 21.5 + n % 100 / 10, "humidity": 40 + n % 7, "ok": True}
            await bridge.emit(Reading(devices[n % 100], "reading", values, 1.7e9 + n))
            if n % chunk == chunk - 1:
                await asyncio.sleep(0)
        figures["emit_seconds"] = time.perf_counter() - began
        figures["commits_while_emitting"] = disk.commits
        for _ in range(2):  # answered once every append before it is committed and settled
            await outbox.disk.load(0, 1)
        gc.collect()
        if measure == "tracemalloc":
            figures["held"] = tracemalloc.get_traced_memory()[0] - start
            tracemalloc.stop()
        else:
            figures["held"] = _status("VmRSS") - start
            figures["peak"] = _status("VmHWM") - start
        if outbox.depth != events:
            raise SystemExit(f"the outbox holds {outbox.depth} of {events} events")
        figures["stored_bytes"] = outbox.stored_bytes
        return figures
    finally:
        await outbox.close()


def _run(events: int, chunk: int, memory_bytes: int, measure: str) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="edged-bench-") as directory:
        return asyncio.run(_backlog(Path(directory), events, chunk, memory_bytes, measure))


def main() -> None:
    """Print the memory a backlog costs against the bytes of its events."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--chunk", type=int, default=100, help="readings between yields")
    parser.add_argument("--memory-bytes", type=int, default=StorageConfig().memory_bytes)
    args = parser.parse_args()
    memory_bytes = args.memory_bytes
    rss = _run(args.events, args.chunk, memory_bytes, "rss")
    traced = _run(args.events, args.chunk, memory_bytes, "tracemalloc")
    baseline = rss["stored_bytes"]
    held = min(args.events, memory_bytes * args.events // baseline)
    print(
        f"orjson {orjson.__version__}; {args.events} events in the outbox, about {held} of them "
        f"held in memory (memory_bytes {memory_bytes / MIB:g} MiB); emitted in "
        f"{rss['emit_seconds']:.1f} s with {rss['commits_while_emitting']:.0f} commits meanwhile"
    )
    print(
        f"baseline, topic+payload bytes: {baseline / MIB:7.1f} MiB "
        f"({baseline / args.events:.0f} bytes per event)"
    )
    for label, figure in (
        ("RSS growth, backlog stored:  ", rss["held"]),
        ("RSS growth, peak meanwhile:  ", rss["peak"] if rss["peak_reset"] else float("nan")),
        ("Python objects (tracemalloc):", traced["held"]),
    ):
        print(
            f"{label} {figure / MIB:7.1f} MiB ({figure / baseline:.2f}x the baseline, "
            f"{figure / args.events:.0f} bytes per event)"
        )
    verdict = "within" if rss["held"] <= TARGET_RSS_GROWTH else "OVER"
    print(f"RSS growth {verdict} the issue's ~{TARGET_RSS_GROWTH // MIB} MB for the backlog")


if __name__ == "__main__":
    main()
