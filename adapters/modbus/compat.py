"""Everything that differs between pymodbus releases, from 3.8.6 (Debian 13) to 3.16 and later.

Nothing else in edged imports pymodbus. The differences bridged here:

* the unit id keyword: ``slave=`` up to 3.9, ``device_id=`` from 3.10;
* "no such unit" is ``NoSuchSlaveException`` up to 3.9, ``NoSuchIdException`` from 3.10;
* servers take ``ignore_missing_slaves=`` or ``ignore_missing_devices=``;
* the server datastore: older releases (3.8) ask ``context[unit]`` for a per-unit object
  (``validate``, ``async_getValues(fc, address, count)``), newer ones (3.16) call
  ``context.async_getValues(unit, fc, address, count)`` and turn their own datastore classes
  into a simulator copy that tests cannot reach;
* a late answer to a request given up on: 3.8 hands it to whatever request waits next (and
  fails on the next answer: ``InvalidStateError`` closes the connection), later releases skip
  a TCP answer with the wrong transaction id (logging an ERROR with frame dumps) but take any
  RTU frame; :func:`make_client` puts the same gate on every release (see :class:`AnswerGate`).

Always passed as keywords: ``count=``, ``framer=``. The client's own retries and reconnects are
switched off; :mod:`edged.adapters.modbus.link` does both with the bus's settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pymodbus
import pymodbus.exceptions
from pymodbus import FramerType
from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.client.mixin import ModbusClientMixin
from pymodbus.datastore import ModbusServerContext
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException
from pymodbus.pdu import ExceptionResponse
from pymodbus.server import ModbusSerialServer, ModbusTcpServer

from edged.adapters.modbus.answers import Request, answers
from edged.adapters.modbus.url import BusUrl

_EXCEPTIONS: Any = pymodbus.exceptions  # the class name changed in 3.10
NoSuchUnitError: type[Exception] = (
    _EXCEPTIONS.NoSuchIdException
    if hasattr(_EXCEPTIONS, "NoSuchIdException")
    else _EXCEPTIONS.NoSuchSlaveException
)


__all__ = [
    "PYMODBUS_VERSION",
    "ConnectionException",
    "EmulatedBus",
    "EmulatedUnit",
    "EmulatorServer",
    "ModbusException",
    "ModbusIOException",
    "call",
    "exception_code",
    "make_client",
    "serve_serial",
    "serve_tcp",
]

PYMODBUS_VERSION: str = pymodbus.__version__

_READ_PARAMS = inspect.signature(ModbusClientMixin.read_holding_registers).parameters
UNIT_KEYWORD = "device_id" if "device_id" in _READ_PARAMS else "slave"
# Typed as Any: their keyword arguments differ between releases.
_TcpServer: Any = ModbusTcpServer
_SerialServer: Any = ModbusSerialServer
_SERVER_PARAMS = inspect.signature(ModbusTcpServer.__init__).parameters
_IGNORE_MISSING = "ignore_missing_devices"
if _IGNORE_MISSING not in _SERVER_PARAMS:
    _IGNORE_MISSING = "ignore_missing_slaves"


# --------------------------------------------------------------------------------------- client


def make_client(
    url: BusUrl,
    connect_timeout: float,
    on_receive: Callable[[], None] | None = None,
    on_stray: Callable[[Any], None] | None = None,
) -> Any:
    """An unconnected async client for ``url``; pymodbus's own retries and reconnects are off.

    ``connect_timeout`` also bounds pymodbus's own response wait; the link enforces its shorter
    per-request timeouts itself. ``on_receive`` is called whenever bytes arrive, ``on_stray``
    with every answer that is not the waiting request's own (see :class:`AnswerGate`).
    """
    gate = AnswerGate(on_stray)
    common: dict[str, Any] = {
        "timeout": connect_timeout,
        "retries": 0,
        "reconnect_delay": 0,
        "name": str(url),
        "trace_pdu": gate.trace_pdu,
    }
    if on_receive is not None:

        def trace_packet(sending: bool, data: bytes) -> bytes:
            if not sending:
                on_receive()
            return data

        common["trace_packet"] = trace_packet
    client: Any
    if url.is_serial:
        client = AsyncModbusSerialClient(
            url.path,
            framer=FramerType.RTU,
            baudrate=url.baudrate,
            bytesize=8,
            parity=url.parity,
            stopbits=url.stopbits,
            **common,
        )
    else:
        framer = FramerType.RTU if url.rtu_framing else FramerType.SOCKET
        client = AsyncModbusTcpClient(url.host, port=url.port, framer=framer, **common)
    gate.install(client)
    return client


async def call(client: Any, function: str, address: int, *, unit: int, **arguments: Any) -> Any:
    """Run client method ``function`` (``read_coils``, ``write_registers``, ...) for ``unit``.

    ``arguments`` are keywords (``count=``, ``value=``, ``values=``): positions moved between
    releases, names did not.
    """
    method = getattr(client, function)
    return await method(address, **{UNIT_KEYWORD: unit}, **arguments)


def exception_code(response: Any) -> int | None:
    """The Modbus exception code of an exception response, ``None`` for a normal response."""
    if response.isError():
        return int(getattr(response, "exception_code", 4))
    return None


# pymodbus 3.9+ skips (and logs at ERROR) frames whose unit or transaction id differs from
# these; the gate judges every frame itself, so it sets them to 0 ("any") while pymodbus decodes.
_EXPECTED_IDS = ("request_dev_id", "request_transaction_id")


class AnswerGate:
    """Hands the waiting request its own answer only; every other frame goes to ``on_stray``.

    pymodbus's transaction manager resolves its ``response_future`` with whatever frame it
    decodes. The gate lets pymodbus decode each frame into a future of the gate's own, then
    judges it (:func:`~.answers.answers`) against the request pymodbus last sent (seen through
    the ``trace_pdu`` hook): the waiting request gets it, or it is a stray (a late answer to a
    request given up on, or an answer nobody asked for) and is dropped without a word from
    pymodbus. A receive buffer holding several frames is worked through frame by frame.
    """

    def __init__(self, on_stray: Callable[[Any], None] | None = None) -> None:
        self.on_stray = on_stray
        self.request: Request | None = None
        """The request in flight (the last one sent and not yet answered)."""

    def trace_pdu(self, sending: bool, pdu: Any) -> Any:
        """pymodbus hook: remember each request as it goes out."""
        if sending:
            self.request = Request.of(pdu)
        return pdu

    def install(self, client: Any) -> None:
        """Put the gate in front of ``client``'s frame handling."""
        manager = client.ctx
        deliver = manager.callback_data

        def callback_data(data: bytes, addr: tuple[Any, ...] | None = None) -> int:
            used = 0
            while used < len(data):
                waiting = manager.response_future
                caught: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
                manager.response_future = caught
                expected = {name: getattr(manager, name) for name in _EXPECTED_IDS
                            if hasattr(manager, name)}  # fmt: skip
                for name in expected:
                    setattr(manager, name, 0)
                try:
                    step = int(deliver(data[used:], addr=addr))
                finally:
                    manager.response_future = waiting
                    for name, value in expected.items():
                        setattr(manager, name, value)
                if step <= 0:
                    break
                used += step
                if caught.done():
                    self._judge(caught.result(), waiting)
            return used

        manager.callback_data = callback_data

    def _judge(self, response: Any, waiting: asyncio.Future[Any]) -> None:
        request = self.request
        if request is not None and not waiting.done() and answers(request, response):
            self.request = None
            waiting.set_result(response)
        elif self.on_stray is not None:
            self.on_stray(response)


# ------------------------------------------------------------------------------- test emulator

_TABLES = {1: "coils", 5: "coils", 15: "coils", 2: "discrete", 3: "holding", 6: "holding",
           16: "holding", 22: "holding", 23: "holding", 4: "input"}  # fmt: skip
_WRITES = frozenset({5, 6, 15, 16, 22, 23})


@dataclass
class EmulatedUnit:
    """One emulated device: four address spaces; an address not in a table is illegal.

    Set ``failure`` to an exception code to refuse every request with it (4: device failure,
    6: busy, ...); ``reads`` and ``writes`` count the requests served, ``refused`` the ones
    answered with an exception.
    """

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    coils: dict[int, bool] = field(default_factory=dict)
    discrete: dict[int, bool] = field(default_factory=dict)
    failure: int | None = None
    reads: int = 0
    writes: int = 0
    refused: int = 0

    def table(self, func_code: int) -> dict[int, Any]:
        """The address space a function code works on."""
        table: dict[int, Any] = getattr(self, _TABLES[func_code])
        return table

    def refusal(self, func_code: int, address: int, count: int) -> int | None:
        """The exception code this request gets, or ``None`` when it is served."""
        if self.failure is not None:
            return self.failure
        if func_code not in _TABLES:
            return 1
        table = self.table(func_code)
        if not all(address + i in table for i in range(count)):
            return 2
        return None


class _UnitView:
    """The per-unit datastore interface of older pymodbus releases (3.8).

    Refused requests never reach it (see :meth:`EmulatedBus.trace_pdu`); what does is served.
    """

    def __init__(self, bus: EmulatedBus, unit: EmulatedUnit) -> None:
        self.bus = bus
        self.unit = unit

    def validate(self, func_code: int, address: int, count: int = 1) -> bool:
        return True

    def getValues(self, func_code: int, address: int, count: int = 1) -> list[Any]:  # noqa: N802
        return self.bus.read(self.unit, func_code, address, count)

    def setValues(self, func_code: int, address: int, values: Sequence[Any]) -> None:  # noqa: N802
        self.bus.write(self.unit, func_code, address, values)

    async def async_getValues(self, func_code: int, address: int, count: int = 1) -> list[Any]:  # noqa: N802
        return self.getValues(func_code, address, count)

    async def async_setValues(self, func_code: int, address: int, values: Sequence[Any]) -> None:  # noqa: N802
        self.setValues(func_code, address, values)


class EmulatedBus(ModbusServerContext):
    """A pymodbus server datastore holding :class:`EmulatedUnit` objects by unit id.

    Units not in ``units`` never answer, as on a real line. It serves both datastore
    interfaces, and refuses requests by swapping the server's outgoing answer in
    :meth:`trace_pdu` (the one hook every supported release calls the same way), so the same
    test sees the same exception codes on every supported pymodbus.
    """

    def __init__(self, units: dict[int, EmulatedUnit]) -> None:
        # The parent's __init__ would build pymodbus's own store; these attributes make a
        # newer server (3.16) use this object as is.
        self.units = units
        self.simdevices: list[Any] = []
        self.old_simulator = True
        self.single = False
        self._refused: dict[tuple[int, int, int], int] = {}

    def _unit(self, unit_id: int) -> EmulatedUnit:
        try:
            return self.units[unit_id]
        except KeyError:
            raise NoSuchUnitError(f"no unit {unit_id}") from None

    def read(self, unit: EmulatedUnit, func_code: int, address: int, count: int) -> list[Any]:
        """Serve a read (or the read-back of a write); missing addresses read as 0."""
        if func_code not in _WRITES:
            unit.reads += 1
        table = unit.table(func_code)
        return [table.get(address + i, 0) for i in range(count)]

    def write(
        self, unit: EmulatedUnit, func_code: int, address: int, values: Sequence[Any]
    ) -> None:
        """Serve a write."""
        unit.writes += 1
        table = unit.table(func_code)
        for i, value in enumerate(values):
            table[address + i] = bool(value) if func_code in (5, 15) else int(value)

    def trace_pdu(self, sending: bool, pdu: Any) -> Any:
        """Server hook: note refused requests, and answer them with an exception response."""
        key = (int(pdu.dev_id), int(pdu.transaction_id), int(pdu.function_code) & 0x7F)
        if not sending:
            unit = self.units.get(pdu.dev_id)
            if unit is not None:
                code = unit.refusal(pdu.function_code, pdu.address, _request_count(pdu))
                if code is not None:
                    unit.refused += 1
                    self._refused[key] = code
                    pdu = _Refused(pdu)
            return pdu
        code = self._refused.pop(key, None)
        if code is None:
            return pdu
        response = ExceptionResponse(key[2], code)
        response.dev_id = pdu.dev_id
        response.transaction_id = pdu.transaction_id
        return response

    # older pymodbus releases (3.8)
    def __getitem__(self, unit_id: int) -> _UnitView:
        return _UnitView(self, self._unit(unit_id))

    def __contains__(self, unit_id: object) -> bool:
        return unit_id in self.units

    def slaves(self) -> list[int]:
        """Unit ids (the older name)."""
        return list(self.units)

    # newer pymodbus releases (3.16)
    def device_ids(self) -> list[int]:
        """Unit ids (the newer name)."""
        return list(self.units)

    async def async_getValues(  # noqa: N802
        self, device_id: int, func_code: int, address: int, count: int = 1
    ) -> Any:
        return self.read(self._unit(device_id), func_code, address, count)

    async def async_setValues(  # noqa: N802
        self, device_id: int, func_code: int, address: int, values: Sequence[Any]
    ) -> Any:
        self.write(self._unit(device_id), func_code, address, values)
        return None


def _request_count(pdu: Any) -> int:
    count = getattr(pdu, "count", None)
    if isinstance(count, int) and count > 0:
        return count
    for name in ("registers", "bits"):
        values = getattr(pdu, name, None)
        if isinstance(values, list) and values:
            return len(values)
    return 1


class _Refused:
    """Stands in for a refused request: serving it touches no data and answers nothing useful."""

    def __init__(self, request: Any) -> None:
        self.request = request
        self.function_code = request.function_code
        self.dev_id = request.dev_id
        self.transaction_id = request.transaction_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.request, name)

    async def update_datastore(self, context: Any) -> Any:  # older pymodbus releases (3.8)
        return self.request

    async def datastore_update(self, context: Any, device_id: int) -> Any:  # newer releases
        return self.request


@dataclass
class EmulatorServer:
    """A running pymodbus server; ``port`` is set for TCP servers."""

    server: Any
    port: int = 0

    async def stop(self) -> None:
        """Stop serving and close every connection."""
        await self.server.shutdown()


async def _serve(server: Any) -> None:
    await server.serve_forever(background=True)


async def serve_tcp(bus: EmulatedBus, port: int = 0, rtu_framing: bool = False) -> EmulatorServer:
    """Serve ``bus`` over TCP on 127.0.0.1 (``port`` 0 picks a free one)."""
    framer = FramerType.RTU if rtu_framing else FramerType.SOCKET
    server = _TcpServer(
        bus,
        framer=framer,
        address=("127.0.0.1", port),
        trace_pdu=bus.trace_pdu,
        **{_IGNORE_MISSING: True},
    )
    await _serve(server)
    return EmulatorServer(server, server.transport.sockets[0].getsockname()[1])


async def serve_serial(
    bus: EmulatedBus, path: str, baudrate: int = 19200, parity: str = "E", stopbits: int = 1
) -> EmulatorServer:
    """Serve ``bus`` as RTU on the serial port (or pty) at ``path``."""
    server = _SerialServer(
        bus,
        framer=FramerType.RTU,
        port=path,
        baudrate=baudrate,
        parity=parity,
        stopbits=stopbits,
        trace_pdu=bus.trace_pdu,
        **{_IGNORE_MISSING: True},
    )
    await _serve(server)
    for _ in range(200):  # the serial transport opens asynchronously
        if server.transport is not None:
            break
        await asyncio.sleep(0.005)
    else:
        with contextlib.suppress(Exception):
            await server.shutdown()
        raise ConnectionException(f"cannot open {path} for the emulator")
    return EmulatorServer(server)
