"""Small helpers for dbus-fast buses (BlueZ for the BLE adapter, logind and systemd for the
privileged path)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


async def close_bus(bus: Any, *, within: float = 2.0) -> None:
    """Disconnect a dbus-fast bus and release its socket now.

    Waits until dbus-fast has taken the socket off the event loop before closing it: a socket
    closed while still registered lets the next connection reuse its descriptor under the old
    reader. Older dbus-fast (2.44, in Debian 13) also leaves the socket's buffered stream open
    on disconnect, which would keep the descriptor until garbage collection.
    """
    bus.disconnect()
    with contextlib.suppress(Exception):  # a bus that ends with an error has still ended
        async with asyncio.timeout(within):
            await bus.wait_for_disconnect()
    stream = getattr(bus, "_stream", None)
    if stream is not None:
        stream.close()
