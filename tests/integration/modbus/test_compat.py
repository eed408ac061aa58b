"""Canaries: what edged relies on in the installed pymodbus, checked against the real library.

Run on the oldest supported release (3.8.6) and the newest; a failure here means the compat
module needs another bridge.
"""

from __future__ import annotations

import asyncio
import inspect

import pytest
from pymodbus.client.mixin import ModbusClientMixin

from edged.adapters.modbus import compat
from edged.adapters.modbus.link import LineDownError, Link, NoResponseError, RefusedError
from edged.adapters.modbus.url import parse_bus_url

pytestmark = [pytest.mark.modbus, pytest.mark.integration]


def test_unit_keyword_matches_the_installed_release() -> None:
    parameters = inspect.signature(ModbusClientMixin.read_coils).parameters
    assert compat.UNIT_KEYWORD in parameters
    assert parameters["count"].kind is inspect.Parameter.KEYWORD_ONLY


async def test_client_against_emulator_every_function(
    units: dict[int, compat.EmulatedUnit], tcp_server: compat.EmulatorServer
) -> None:
    unit = compat.EmulatedUnit(
        holding={0: 1, 1: 2, 2: 3},
        input={5: 55},
        coils={0: True, 1: False, 2: True},
        discrete={7: True},
    )
    units[1] = unit
    async with Link(parse_bus_url(f"tcp://127.0.0.1:{tcp_server.port}"), timeout=1) as link:
        assert await link.read("holding", 1, 0, 3) == [1, 2, 3]
        assert await link.read("input", 1, 5, 1) == [55]
        assert await link.read("coil", 1, 0, 3) == [True, False, True]
        assert await link.read("discrete", 1, 7, 1) == [True]
        await link.write_registers(1, 1, [7], single=True)
        await link.write_registers(1, 0, [8, 9], single=False)
        await link.write_coils(1, 1, [True], single=True)
        await link.write_coils(1, 0, [False, False], single=False)
    assert unit.holding == {0: 8, 1: 9, 2: 3}
    assert unit.coils == {0: False, 1: False, 2: True}
    assert (unit.reads, unit.writes) == (4, 4)


async def test_refusals_carry_their_exception_code(
    units: dict[int, compat.EmulatedUnit], tcp_server: compat.EmulatorServer
) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 1}, coils={0: True})
    units[2] = compat.EmulatedUnit(holding={0: 1}, failure=6)
    async with Link(parse_bus_url(f"tcp://127.0.0.1:{tcp_server.port}"), timeout=1) as link:
        for call in (
            link.read("holding", 1, 0, 2),
            link.read("coil", 1, 3, 1),
            link.write_registers(1, 9, [1], single=True),
        ):
            with pytest.raises(RefusedError) as refused:
                await call
            assert refused.value.code == 2
        with pytest.raises(RefusedError, match=r"exception 6 \(device busy\)"):
            await link.read("holding", 2, 0, 1)
        assert units[1].holding == {0: 1}  # the refused write changed nothing
        assert await link.read("holding", 1, 0, 1) == [1]


async def test_a_missing_unit_is_silent(
    units: dict[int, compat.EmulatedUnit], tcp_server: compat.EmulatorServer
) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 1})
    async with Link(parse_bus_url(f"tcp://127.0.0.1:{tcp_server.port}"), timeout=0.05) as link:
        with pytest.raises(NoResponseError):
            await link.read("holding", 9, 0, 1)
        assert await link.read("holding", 1, 0, 1) == [1]
        assert link.stats.timeouts == 1


@pytest.mark.parametrize("retry_at_once", [False, True])
async def test_a_late_answer_does_not_break_the_connection(retry_at_once: bool) -> None:
    """pymodbus 3.8 drops the connection when an answer finds no request waiting for it.

    With ``retry_at_once`` the late answer lands on the retry's request, and the retry's own
    answer then finds nobody waiting.
    """
    first = asyncio.Event()
    handlers: set[asyncio.Task[None]] = set()

    async def slow_device(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            while header := await reader.readexactly(7):
                body = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
                if not first.is_set():
                    first.set()
                    await asyncio.sleep(0.15)  # longer than the client's timeout
                else:
                    await asyncio.sleep(0.02)  # answers arrive apart, not in one segment
                reply = bytes([header[6], 3, 2, 0, 42])
                writer.write(header[:4] + len(reply).to_bytes(2, "big") + reply)
                assert body[0] == 3
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(slow_device, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with Link(parse_bus_url(f"tcp://127.0.0.1:{port}"), timeout=0.05) as link:
            with pytest.raises(NoResponseError):
                await link.read("holding", 1, 0, 1)
            if retry_at_once:
                assert await link.read("holding", 1, 0, 1, patience=0.5) == [42]
            await asyncio.sleep(0.2)  # the late (or second) answer arrives meanwhile
            assert link.connected
            assert await link.read("holding", 1, 0, 1) == [42]
            assert link.connected
    finally:
        server.close()
        for handler in handlers:
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        await server.wait_closed()


async def test_connect_refused_and_connection_lost(
    units: dict[int, compat.EmulatedUnit],
) -> None:
    units[1] = compat.EmulatedUnit(holding={0: 1})
    server = await compat.serve_tcp(compat.EmulatedBus(units))
    url = parse_bus_url(f"tcp://127.0.0.1:{server.port}")
    link = Link(url, timeout=0.2, connect_timeout=1)
    try:
        await link.connect()
        assert await link.read("holding", 1, 0, 1) == [1]
        await server.stop()
        with pytest.raises(LineDownError, match="connection lost"):
            await link.read("holding", 1, 0, 1)
        assert not link.connected
        with pytest.raises(LineDownError):
            await link.read("holding", 1, 0, 1)
        with pytest.raises(LineDownError, match="cannot connect"):
            await link.connect()
    finally:
        link.close()


async def test_missing_serial_port_is_line_down(tmp_path: object) -> None:
    link = Link(parse_bus_url("rtu:///dev/nonexistent-edged-test"), connect_timeout=1)
    with pytest.raises(LineDownError, match="cannot open the port"):
        await link.connect()
    assert not link.connected
