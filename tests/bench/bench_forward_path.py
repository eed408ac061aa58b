"""Benchmark: CPU per message of the outbox path alone, without paho, broker or adapter.

One process puts N events into a real outbox (SQLite in a temporary directory, its disk thread
included) and a :class:`~edged.forwarder.Forwarder` hands them to a fake uplink that keeps
``--window`` in flight and acknowledges them in order, ``--per-read`` at a time, as PUBACKs
read from one socket event would be. The figure is the process's CPU time (every thread) per
message from the first put until the outbox is empty: the daemon's own overhead between the
bridge and paho, steadier than ``bench_core`` on a busy machine.

    .venv/bin/python -m tests.bench.bench_forward_path [--events 30000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from edged.forwarder import Forwarder  # noqa: E402
from edged.model import OutgoingMessage  # noqa: E402
from edged.outbox import BULK_LANE, DiskThread, Outbox, OutboxStore  # noqa: E402

TOPIC = "iot-2/type/sim/id/bench-dev/evt/reading/fmt/json"


class AckingUplink:
    """Publishes nothing; acknowledges in order, ``per_read`` messages per loop turn."""

    def __init__(self, window: int, per_read: int) -> None:
        self.window = window
        self.per_read = per_read
        self.pending: deque[asyncio.Future[None]] = deque()
        self.room = asyncio.Event()
        self.reading = False

    async def publish(self, topic: str, payload: bytes, qos: int) -> asyncio.Future[None]:
        """Wait for room in the window; the future settles in a later loop turn."""
        while len(self.pending) >= self.window:
            self.room.clear()
            await self.room.wait()
        loop = asyncio.get_running_loop()
        delivery: asyncio.Future[None] = loop.create_future()
        self.pending.append(delivery)
        if not self.reading:
            self.reading = True
            loop.call_soon(self._read_event)
        return delivery

    def _read_event(self) -> None:
        for _ in range(min(self.per_read, len(self.pending))):
            self.pending.popleft().set_result(None)
        self.room.set()
        self.reading = bool(self.pending)
        if self.reading:
            asyncio.get_running_loop().call_soon(self._read_event)


async def one_round(events: int, window: int, per_read: int) -> float:
    """CPU microseconds per message for ``events`` messages through the outbox path."""
    with tempfile.TemporaryDirectory(prefix="edged-fwd-") as tmp:
        outbox = Outbox(DiskThread(OutboxStore(f"{tmp}/outbox.sqlite")), max_bytes=1 << 30)
        await outbox.start()
        forwarder = asyncio.ensure_future(
            Forwarder(outbox, Counter()).run(AckingUplink(window, per_read))
        )
        start = time.process_time()
        for n in range(events):
            payload = b'{"ts":"2026-11-23T12:00:00.000Z","d":{"n":%d,"v":21.5}}' % n
            outbox.put(BULK_LANE, "sim/bench-dev", OutgoingMessage(TOPIC, payload, 1))
            if n % 256 == 255:  # as the simulated adapter does when emitting flat out
                await asyncio.sleep(0)
                if outbox.lagging:
                    await outbox.caught_up()
        await outbox.wait_empty()
        cpu = time.process_time() - start
        forwarder.cancel()
        await outbox.close()
    return cpu / events * 1e6


def main() -> None:
    """Run ``--rounds`` rounds and print each and the median."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=30000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--window", type=int, default=100)
    parser.add_argument("--per-read", type=int, default=20)
    args = parser.parse_args()
    figures = [
        asyncio.run(one_round(args.events, args.window, args.per_read)) for _ in range(args.rounds)
    ]
    print(
        f"outbox path: {statistics.median(figures):.1f} us CPU/message (median; rounds: "
        + ", ".join(f"{f:.1f}" for f in figures)
        + ")"
    )


if __name__ == "__main__":
    main()
