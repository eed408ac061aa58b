"""Fixtures for BLE integration tests: BlueZ mocked on a private system bus, always torn down."""

from __future__ import annotations

import asyncio
import gc
import os
import warnings
from collections.abc import AsyncIterator

import pytest

from tests.integration.ble.bluez import BluezMock, running


async def release_bleak() -> None:
    """Close bleak's cached system-bus connection of this event loop.

    bleak keeps one BlueZ manager (and D-Bus socket) per event loop for the life of the process.
    A daemon has one loop; tests get a new loop each, so the socket must be closed here or every
    test would leak a file descriptor. Reaches into bleak's module state; the canary test
    ``test_bleak_manager_is_released`` fails if that state moves.
    """
    from bleak.backends.bluezdbus import manager

    from edged.dbusutil import close_bus

    instance = manager._global_instances.pop(asyncio.get_running_loop(), None)
    bus = getattr(instance, "_bus", None)
    if bus is not None:
        await close_bus(bus)


def collect_failed_connections() -> None:
    """Free sockets that bleak 0.22 drops without closing when its BlueZ connection fails.

    bleak 0.22 (Debian 13) does not close the D-Bus socket when connecting to BlueZ fails (no
    bus, no bluetoothd); it is freed, with a ResourceWarning, when collected. Collect it now,
    before the leak check, without turning that warning into an error.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


@pytest.fixture
async def bluez(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BluezMock]:
    """BlueZ with one powered controller hci0 on a private system bus; bleak points at it."""
    open_before = _open_fds()
    with running() as mock:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", mock.address)
        mock.add_adapter("hci0")
        try:
            yield mock
        finally:
            await release_bleak()
            await _settle(open_before)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settle(open_before: int, within: float = 1.0) -> None:
    """Give bleak's own connections time to close before the leak check counts descriptors.

    bleak 0.22 opens a D-Bus connection per GATT client and closes it from a callback after the
    client's disconnect; dbus-fast 2.44 frees the socket only when the bus object is collected.
    A descriptor that stays open past ``within`` is a real leak and fails the leak check.
    """
    deadline = asyncio.get_running_loop().time() + within
    while asyncio.get_running_loop().time() < deadline:
        gc.collect()
        if _open_fds() <= open_before + 1:  # the mock's log file is still open here
            return
        await asyncio.sleep(0.02)
