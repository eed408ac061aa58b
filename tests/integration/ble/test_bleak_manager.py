"""Canary for the one private piece of bleak the tests rely on (see ``release_bleak``)."""

from __future__ import annotations

import asyncio
import os

import pytest

from edged.adapters.ble.scanner import scanner_kwargs
from tests.integration.ble.bluez import BluezMock
from tests.integration.ble.conftest import release_bleak

pytestmark = [pytest.mark.ble, pytest.mark.integration]


async def test_bleak_manager_is_released(bluez: BluezMock) -> None:
    from bleak import BleakScanner
    from bleak.backends.bluezdbus import manager

    before = len(os.listdir("/proc/self/fd"))
    scanner = BleakScanner(lambda device, data: None, **scanner_kwargs("hci0"))
    await scanner.start()
    await scanner.stop()
    loop = asyncio.get_running_loop()
    assert loop in manager._global_instances, "bleak keeps its BlueZ manager per event loop"
    assert len(os.listdir("/proc/self/fd")) > before, "and its D-Bus socket open"
    await release_bleak()
    assert loop not in manager._global_instances
    assert len(os.listdir("/proc/self/fd")) == before
