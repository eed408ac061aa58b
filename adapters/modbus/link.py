"""One physical Modbus line: connect, then one transaction at a time with a real timeout.

The link owns the pymodbus client (through :mod:`.compat`) and adds what a shared RS-485 line
needs: a silence of ``frame_delay`` before every request, a per-request timeout that on serial
lines also covers the time the two frames spend on the wire, and errors mapped to four
classes the scheduler acts on: :class:`LineDownError` (the line itself is gone),
:class:`NoResponseError` (the device kept silent), :class:`BadResponseError` (an answer that
makes no sense) and :class:`RefusedError` (a Modbus exception response with its code).

Late answers: an answer that arrives after its request timed out is recognised and dropped
(counted in :attr:`LinkStats.late`), never taken for the answer to the next request; see
:mod:`.answers`. On RTU framing, where answers carry no transaction id, a read that would look
exactly like a timed-out one (same unit, function and size, another address) first waits up
to one more timeout for the late answer, which is then dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

from edged.adapters.modbus import compat
from edged.adapters.modbus.answers import Request, Unanswered
from edged.adapters.modbus.url import BusUrl

log = logging.getLogger(__name__)

EXCEPTION_NAMES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "device failure",
    5: "acknowledge",
    6: "device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}

_READS = {
    "holding": ("read_holding_registers", 3),
    "input": ("read_input_registers", 4),
    "coil": ("read_coils", 1),
    "discrete": ("read_discrete_inputs", 2),
}


def quiet_pymodbus_logging() -> None:
    """Raise pymodbus's loggers to CRITICAL, whatever configured them before.

    pymodbus logs failed connects, exception responses and mismatched answers at WARNING and
    ERROR, the latter with hex dumps of the last frames; edged logs the state changes itself
    (once when failing starts, once on recovery) and counts late answers, so the library's own
    lines would only repeat them on every poll. Idempotent, and independent of when logging
    was set up: it sets the level of the ``pymodbus`` logger itself (pymodbus logs through its
    child ``pymodbus.logging``, which inherits it). Only an explicit
    ``pymodbus.pymodbus_apply_logging_config()`` afterwards (a level and a handler on that
    child) brings the library's lines back, for debugging by hand.
    """
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class LinkError(Exception):
    """A transaction did not produce a usable answer."""


class LineDownError(LinkError):
    """The line is unusable: the port vanished, the TCP connection dropped or was refused."""


class NoResponseError(LinkError):
    """The device sent nothing within the timeout."""


class BadResponseError(LinkError):
    """An answer arrived but was garbled, for another unit, or of the wrong size."""


class RefusedError(LinkError):
    """The device answered with a Modbus exception response."""

    def __init__(self, code: int) -> None:
        self.code = code
        super().__init__(f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown')})")


@dataclass
class LinkStats:
    """Counters for benchmarks and the status event; one per line, kept across reconnects."""

    transactions: int = 0
    timeouts: int = 0
    refusals: int = 0
    bad: int = 0
    late: int = 0
    """Answers that arrived for no waiting request (late ones, mostly), dropped."""


def _bits_bytes(count: int) -> int:
    return (count + 7) // 8


class Link:
    """A pymodbus client on one line, used by one task at a time (a lock enforces it)."""

    def __init__(
        self,
        url: BusUrl,
        *,
        timeout: float = 0.5,
        frame_delay: float | None = None,
        connect_timeout: float = 3.0,
        stats: LinkStats | None = None,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.frame_delay = url.frame_gap if frame_delay is None else frame_delay
        self.connect_timeout = connect_timeout
        self.stats = LinkStats() if stats is None else stats
        self._client: Any = None
        self._lock = asyncio.Lock()
        self._quiet_until = 0.0
        self._last_byte = 0.0
        self._rtu = url.is_serial or url.rtu_framing
        self._unanswered = Unanswered()
        self._stray_heard = asyncio.Event()

    @property
    def connected(self) -> bool:
        """Whether the client holds an open connection or port."""
        return self._client is not None and bool(self._client.connected)

    async def connect(self) -> None:
        """Open the port or connection; raises :class:`LineDownError` saying why not."""
        self.close()
        self._client = compat.make_client(
            self.url, self.connect_timeout, self._received, self._stray
        )
        try:
            async with asyncio.timeout(self.connect_timeout + 1.0):
                ok = await self._client.connect()
        except (TimeoutError, OSError, compat.ModbusException) as exc:
            self.close()
            raise LineDownError(
                f"cannot connect to {self.url}: {exc or type(exc).__name__}"
            ) from exc
        if not ok or not self.connected:
            self.close()
            where = "open the port" if self.url.is_serial else "connect"
            raise LineDownError(f"cannot {where}: {self.url}")

    def close(self) -> None:
        """Close the connection (idempotent)."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    async def __aenter__(self) -> Link:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    async def read(
        self, kind: str, unit: int, address: int, count: int, *, patience: float | None = None
    ) -> list[int] | list[bool]:
        """Read ``count`` registers or bits of ``kind`` (holding, input, coil, discrete).

        ``patience`` is the response timeout (the link's ``timeout`` when ``None``); on a serial
        line the frames' wire time is added to it.
        """
        function, code = _READS[kind]
        bits = kind in ("coil", "discrete")
        response_bytes = 5 + (_bits_bytes(count) if bits else 2 * count)
        response = await self._transact(
            function,
            unit,
            address,
            {"count": count},
            frame_bytes=8 + response_bytes,
            patience=patience,
            read=Request(unit, 0, code, address.to_bytes(2, "big") + count.to_bytes(2, "big")),
        )
        if bits:
            values: list[Any] = list(response.bits[:count])
        else:
            values = list(response.registers)
        if len(values) != count:
            self.stats.bad += 1
            raise BadResponseError(f"asked for {count} values, got {len(values)}")
        return values

    async def write_registers(
        self,
        unit: int,
        address: int,
        registers: Sequence[int],
        *,
        single: bool,
        patience: float | None = None,
    ) -> None:
        """Write registers: function 6 when ``single`` (one register), else function 16."""
        if single:
            args: dict[str, Any] = {"value": registers[0]}
            await self._transact(
                "write_register", unit, address, args, frame_bytes=16, patience=patience
            )
        else:
            args = {"values": list(registers)}
            size = 9 + 2 * len(registers) + 8
            await self._transact(
                "write_registers", unit, address, args, frame_bytes=size, patience=patience
            )

    async def write_coils(
        self,
        unit: int,
        address: int,
        values: Sequence[bool],
        *,
        single: bool,
        patience: float | None = None,
    ) -> None:
        """Write coils: function 5 when ``single`` (one coil), else function 15."""
        if single:
            args: dict[str, Any] = {"value": bool(values[0])}
            await self._transact(
                "write_coil", unit, address, args, frame_bytes=16, patience=patience
            )
        else:
            args = {"values": [bool(v) for v in values]}
            size = 9 + _bits_bytes(len(values)) + 8
            await self._transact(
                "write_coils", unit, address, args, frame_bytes=size, patience=patience
            )

    async def _transact(
        self,
        function: str,
        unit: int,
        address: int,
        arguments: dict[str, Any],
        *,
        frame_bytes: int,
        patience: float | None,
        read: Request | None = None,
    ) -> Any:
        async with self._lock:
            if not self.connected:
                raise LineDownError(f"connection lost: {self.url}")
            if read is not None and self._rtu:
                await self._settle(read)
            quiet = self._quiet_until - time.monotonic()
            if quiet > 0:
                await asyncio.sleep(quiet)
            limit = (self.timeout if patience is None else patience) + self.url.wire_time(
                frame_bytes
            )
            self.stats.transactions += 1
            sent = time.monotonic()
            try:
                async with asyncio.timeout(limit):
                    response = await compat.call(
                        self._client, function, address, unit=unit, **arguments
                    )
            except TimeoutError:
                if read is not None and self._rtu:
                    self._unanswered.gave_up(read, time.monotonic() + limit)
                silence = NoResponseError(
                    f"no answer from unit {unit} within {limit * 1000:.0f} ms"
                )
                self._lost_or(silence)
            except compat.ConnectionException as exc:
                raise LineDownError(f"connection lost: {self.url}") from exc
            except compat.ModbusException as exc:
                self._lost_or(BadResponseError(f"unusable answer from unit {unit}: {exc}"))
            finally:
                # The silence counts from the last byte heard (or sent, when nothing came).
                self._quiet_until = max(self._last_byte, sent) + self.frame_delay
            if read is not None and self._unanswered:
                self._unanswered.answered(read, time.monotonic(), limit)
        code = compat.exception_code(response)
        if code is not None:
            self.stats.refusals += 1
            raise RefusedError(code)
        return response

    def _received(self) -> None:
        self._last_byte = time.monotonic()

    def _stray(self, response: Any) -> None:
        """An answer for no waiting request: count it, and free a read waiting for it."""
        self.stats.late += 1
        self._unanswered.stray(response, time.monotonic())
        self._stray_heard.set()
        log.debug(
            "%s: dropped a late answer (unit %s, function %s)",
            self.url,
            getattr(response, "dev_id", "?"),
            getattr(response, "function_code", "?"),
        )

    async def _settle(self, read: Request) -> None:
        """Before ``read`` goes out on RTU, wait out a late answer that would look like its own.

        Only when a read of the same unit, function and size but another address timed out
        less than one timeout ago: its answer may still come, and could not be told apart.
        """
        while (until := self._unanswered.blocking(read, time.monotonic())) is not None:
            self._stray_heard.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, until - time.monotonic())):
                    await self._stray_heard.wait()

    def _lost_or(self, error: NoResponseError | BadResponseError) -> NoReturn:
        """Raise :class:`LineDownError` if the connection went away meanwhile, else ``error``."""
        if not self.connected:
            raise LineDownError(f"connection lost: {self.url}") from error
        if isinstance(error, NoResponseError):
            self.stats.timeouts += 1
        else:
            self.stats.bad += 1
        raise error
