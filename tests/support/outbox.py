"""A real outbox on a temporary directory, for tests of the parts that feed it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from edged.model import OutgoingMessage
from edged.outbox import DiskThread, Outbox, OutboxStore


@contextlib.asynccontextmanager
async def open_outbox(directory: Path, **options: Any) -> AsyncIterator[Outbox]:
    """An started :class:`Outbox` at ``directory/outbox.sqlite``, closed afterwards."""
    disk = DiskThread(OutboxStore(str(directory / "outbox.sqlite")), commit_interval=0.01)
    outbox = Outbox(disk, **{"max_bytes": 1 << 30, **options})
    await outbox.start()
    try:
        yield outbox
    finally:
        await outbox.close()


def take_all(outbox: Outbox) -> list[OutgoingMessage]:
    """Every message ready to be sent now, in the order the forwarder would take them."""
    taken = []
    while (entry := outbox.take_nowait()) is not None:
        taken.append(entry.message)
    return taken
