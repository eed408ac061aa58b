"""Rebooting an attached Modbus device through a coil write: the platform's reboot request, the
daemon's adapter command, pymodbus's own server seeing the coil change."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edged.adapters.modbus import compat
from edged.emulator import PlatformEmulator
from edged.model import DeviceIdentity
from tests.integration.dm.helpers import FACTORY_RESET, GW, REBOOT, dm_config, wait_managed
from tests.support.broker import Broker
from tests.support.daemon import running_daemon

pytestmark = [pytest.mark.modbus, pytest.mark.integration]

PLC = DeviceIdentity("plc", "plc-1")
RESTART_COIL = 5


@contextmanager
def modbus_server(units: dict[int, compat.EmulatedUnit]) -> Iterator[compat.EmulatorServer]:
    """pymodbus's TCP server on loopback, on an event loop of its own (the test thread blocks)."""
    library = logging.getLogger("pymodbus")
    level = library.level
    library.setLevel(logging.CRITICAL)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="modbus-server", daemon=True)
    thread.start()
    try:
        bus = compat.EmulatedBus(units)
        server = asyncio.run_coroutine_threadsafe(compat.serve_tcp(bus), loop).result(5)
        try:
            yield server
        finally:
            asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
        library.setLevel(level)


def test_reboot_of_an_attached_modbus_device_writes_its_coil(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    unit = compat.EmulatedUnit(holding={0: 230}, coils={RESTART_COIL: False})
    with modbus_server({1: unit}) as server:
        plc = {
            "id": PLC.device_id,
            "type": PLC.type_id,
            "adapter": "modbus",
            "modbus": {
                "url": f"tcp://127.0.0.1:{server.port}",
                "unit": 1,
                "interval": 0.2,
                "points": {"voltage": {"address": 0}},
                "commands": {"restart": {"address": RESTART_COIL, "kind": "coil"}},
            },
            "manage": {"actions": {"reboot": {"command": "restart", "data": {"value": True}}}},
        }
        config = dm_config(tmp_path, broker, devices=[plc])
        with running_daemon(config):
            wait_managed(emulator, GW, PLC)
            emulator.wait_for_events(device=PLC, event="reading")
            writes = unit.writes
            answer = emulator.dm_request(PLC, REBOOT)
            coil_after_answer = unit.coils[RESTART_COIL]  # the answer came after the write
            not_configured = emulator.dm_request(PLC, FACTORY_RESET)
    assert answer["rc"] == 202, answer
    assert coil_after_answer is True
    assert unit.writes == writes + 1
    assert not_configured["rc"] == 501
    record = emulator.device(PLC)
    assert record is not None and record.dm.supports["deviceActions"] is True
    assert emulator.violations == []
