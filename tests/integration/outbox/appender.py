"""Child process for the kill -9 tests: appends batches through a DiskThread until killed.

    python appender.py DB TAG SYNCHRONOUS

After each append's future resolves it prints ``A id=TAG:seq ...`` (those rows are committed),
then ``Q id ...`` for every other id of that batch and queues their deletion. The next resolved
append proves the deletes queued before it were committed too (a commit covers everything queued
before it), so it prints ``D id ...`` for them first. Deletes queued but not confirmed when the
child dies may or may not have been committed. Lines are flushed one by one; the parent trusts
only complete lines.
"""

from __future__ import annotations

import asyncio
import sys
import time

from edged.outbox import DiskThread, OutboxStore

BATCH = 10


async def main(path: str, tag: str, synchronous: str) -> None:
    store = OutboxStore(path, synchronous=synchronous)
    disk = DiskThread(store, commit_interval=0.005, commit_batch=64)
    disk.start()
    print("READY", flush=True)
    seq = 0
    queued_deletes: list[int] = []
    while True:
        rows = [
            (
                2,
                f"meter/m{n % 3}",
                "iot-2/evt/reading/fmt/json",
                f"{tag}:{n}".encode(),
                1,
                time.time(),
            )
            for n in range(seq, seq + BATCH)
        ]
        ids = await disk.append(rows)
        lines = []
        if queued_deletes:
            lines.append("D " + " ".join(map(str, queued_deletes)))
        lines.append(
            "A "
            + " ".join(f"{i}={tag}:{n}" for i, n in zip(ids, range(seq, seq + BATCH), strict=True))
        )
        queued_deletes = ids[::2]
        lines.append("Q " + " ".join(map(str, queued_deletes)))
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        disk.delete(queued_deletes)
        seq += BATCH


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
