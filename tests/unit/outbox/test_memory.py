"""Memory held by a backlog: it lives on disk, not in the daemon (issue 8, item 13; issue 9).

Readings go through the real bridge into a real outbox while nothing takes them, as during an
outage. Was: every queued reading stayed in memory (and, before payloads were copied into a
buffer of their own size, held ~4 KiB each).
"""

from __future__ import annotations

import gc
import tracemalloc
from pathlib import Path

from edged.bridge import Bridge
from edged.model import DeviceIdentity, Reading
from tests.support.outbox import open_outbox

READINGS = 5000
MEMORY_BYTES = 256 * 1024
"""The smallest ``storage.memory_bytes`` the configuration accepts."""


async def test_a_backlog_of_5000_readings_holds_bounded_memory(tmp_path: Path) -> None:
    devices = [DeviceIdentity("meter", f"m-{n}") for n in range(10)]
    async with open_outbox(tmp_path, memory_bytes=MEMORY_BYTES) as outbox:
        bridge = Bridge(DeviceIdentity("gw", "gw-1"), [], outbox)
        tracemalloc.start()
        try:
            start = tracemalloc.get_traced_memory()[0]
            for n in range(READINGS):
                values = {"t": 21.5 + n, "h": 40, "label": "x" * 500}
                await bridge.emit(Reading(devices[n % 10], "reading", values, 1.7e9 + n))
            # A load is answered after every append before it is committed and settled; the
            # second one also makes the idle disk thread let go of the batch it served last.
            for _ in range(2):
                await outbox.disk.load(0, 1)
            gc.collect()
            held = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        assert outbox.depth == READINGS
        stored = await outbox.disk.load(0, READINGS + 1)
        assert len(stored) == READINGS  # every one accepted is on disk
        payload_bytes = sum(len(row.payload) for row in stored)
    # Held in memory, the payloads alone would exceed the bound.
    assert payload_bytes > 2.5 * 1024 * 1024
    assert held < 2 * 1024 * 1024, f"{held} bytes held for {payload_bytes} bytes of payloads"
