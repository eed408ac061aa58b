"""Fixtures for BLE integration tests: BlueZ mocked on a private system bus, always torn down."""

from __future__ import annotations

import asyncio
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

    from edged.adapters.ble.power import close_bus

    instance = manager._global_instances.pop(asyncio.get_running_loop(), None)
    bus = getattr(instance, "_bus", None)
    if bus is not None:
        close_bus(bus)
        await asyncio.sleep(0)  # let dbus-fast finish its disconnect callbacks


@pytest.fixture
async def bluez(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[BluezMock]:
    """BlueZ with one powered controller hci0 on a private system bus; bleak points at it."""
    with running() as mock:
        monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", mock.address)
        mock.add_adapter("hci0")
        try:
            yield mock
        finally:
            await release_bleak()
