"""Fixtures for the Modbus integration tests: pymodbus's own server, socat pty pairs."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from edged.adapters.modbus import compat
from tests.integration.modbus.helpers import SocatPair


@pytest.fixture(autouse=True)
def quiet_pymodbus() -> Iterator[None]:
    """Keep pymodbus's own per-frame log lines out of the test output."""
    library = logging.getLogger("pymodbus")
    level = library.level
    library.setLevel(logging.CRITICAL)
    yield
    library.setLevel(level)


@pytest.fixture
def units() -> dict[int, compat.EmulatedUnit]:
    """The emulated devices, by unit id; tests add and change them freely."""
    return {}


@pytest.fixture
async def tcp_server(units: dict[int, compat.EmulatedUnit]) -> AsyncIterator[compat.EmulatorServer]:
    """pymodbus's TCP server on a free loopback port, serving ``units``."""
    server = await compat.serve_tcp(compat.EmulatedBus(units))
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture
def socat(tmp_path: Path) -> Iterator[SocatPair]:
    """A socat pty pair; the emulator takes end ``a``, the adapter end ``b``."""
    pair = SocatPair(tmp_path)
    pair.start()
    try:
        yield pair
    finally:
        pair.stop()
