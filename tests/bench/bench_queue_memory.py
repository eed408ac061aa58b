"""Benchmark: memory held per queued reading (the cost of an outage, per reading read).

Readings go through the real bridge into the send queue while nothing drains it, as during an
outage; tracemalloc counts the bytes they hold. The baseline in the same run is the encoded
payload alone (what a reading must cost at least), so the ratio says how much bookkeeping sits
around each payload.

    .venv/bin/python -m tests.bench.bench_queue_memory [--readings 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import time
import tracemalloc

import orjson

from edged.bridge import Bridge
from edged.model import DeviceIdentity, Reading


async def _queued_bytes(readings: int) -> tuple[float, float]:
    devices = [DeviceIdentity("meter-type", f"meter-{n:04d}") for n in range(10)]
    bridge = Bridge(DeviceIdentity("gw", "gw-1"), [], queue_size=readings + 1, queue_bytes=1 << 32)
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for n in range(readings):
        values = {"temperature": 21.5 + n % 100 / 10, "humidity": 40 + n % 7, "ok": True}
        await bridge.emit(Reading(devices[n % 10], "reading", values, time.time()))
    held = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    payload = sum(len(bridge.queue.get_nowait().payload) for _ in range(readings))
    return held / readings, payload / readings


def main() -> None:
    """Print bytes per queued reading against the payload's own size."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--readings", type=int, default=20000)
    args = parser.parse_args()
    per_reading, payload = asyncio.run(_queued_bytes(args.readings))
    print(f"orjson {orjson.__version__}; {args.readings} readings queued")
    print(f"payload alone:       {payload:8.1f} bytes per reading (baseline)")
    print(
        f"held while queued:   {per_reading:8.1f} bytes per reading ({per_reading / payload:.1f}x)"
    )


if __name__ == "__main__":
    main()
