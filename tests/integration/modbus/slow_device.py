"""A raw Modbus device that answers some reads late, over TCP or on a pty (RTU).

Like a real device it handles one request at a time, in arrival order: a request that arrives
while a slow one is being answered waits its turn, so the answers to a timed-out request and
to its retry arrive back to back, after the client gave up on the first. It speaks function 3
(read holding registers) only, independently of pymodbus, so the client's framing is checked
against bytes built here.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from collections import Counter
from collections.abc import Callable, Mapping

from tests.integration.modbus.helpers import crc16

ANSWER_DELAY = 0.005
"""Seconds a normal answer takes: answers arrive apart, not in one segment."""

Send = Callable[[bytes, bytes], None]
"""Puts one answer on the wire: the request's header (TCP) and the answer's PDU body."""
Requests = asyncio.Queue[tuple[bytes, int, int]]
"""Requests in arrival order: header, address, count."""


class SlowDevice:
    """Answers reads of ``registers`` for ``unit``; ``slow[(address, n)]`` delays the n-th read
    (counting from 1) of ``address`` by that many seconds."""

    def __init__(
        self, registers: Mapping[int, int], slow: Mapping[tuple[int, int], float], unit: int = 1
    ) -> None:
        self.registers = dict(registers)
        self.slow = dict(slow)
        self.unit = unit
        self.reads: Counter[int] = Counter()
        self.late = 0
        """Answers sent after a delay from ``slow``."""
        self._tasks: set[asyncio.Task[None]] = set()

    def _start(self, send: Send) -> Requests:
        """Start answering through ``send``; put each request on the queue returned."""
        requests: Requests = asyncio.Queue()
        self._tasks.add(asyncio.create_task(self._answer(requests, send)))
        return requests

    async def _answer(self, requests: Requests, send: Send) -> None:
        while True:
            header, address, count = await requests.get()
            self.reads[address] += 1
            delay = self.slow.get((address, self.reads[address]))
            if delay is not None:
                self.late += 1
            await asyncio.sleep(ANSWER_DELAY if delay is None else delay)
            values = [self.registers.get(address + i, 0) for i in range(count)]
            body = bytes([3, 2 * count]) + b"".join(v.to_bytes(2, "big") for v in values)
            send(header, body)

    async def close(self) -> None:
        """Stop answering."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()


class SlowTcpDevice(SlowDevice):
    """The device behind a Modbus TCP server on 127.0.0.1 (``port`` after :meth:`start`)."""

    server: asyncio.Server | None = None
    port = 0

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._tasks.add(handler)

        def send(header: bytes, body: bytes) -> None:
            pdu = bytes([header[6]]) + body
            writer.write(header[:4] + len(pdu).to_bytes(2, "big") + pdu)

        requests = self._start(send)
        try:
            while True:
                header = await reader.readexactly(7)
                pdu = await reader.readexactly(int.from_bytes(header[4:6], "big") - 1)
                if header[6] == self.unit and pdu[0] == 3:
                    address, count = (int.from_bytes(pdu[i : i + 2], "big") for i in (1, 3))
                    requests.put_nowait((header, address, count))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        """Stop answering and listening; close every connection."""
        if self.server is not None:
            self.server.close()
        await super().close()
        if self.server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 2)


class SlowRtuDevice(SlowDevice):
    """The device on the far end of a pty pair (RTU frames with CRC)."""

    def __init__(
        self,
        path: str,
        registers: Mapping[int, int],
        slow: Mapping[tuple[int, int], float],
        unit: int = 1,
    ) -> None:
        super().__init__(registers, slow, unit)
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        tty.setraw(self.fd)
        self._buffer = b""

        def send(header: bytes, body: bytes) -> None:
            frame = bytes([self.unit]) + body
            os.write(self.fd, frame + crc16(frame))

        self._requests = self._start(send)
        asyncio.get_running_loop().add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        with contextlib.suppress(BlockingIOError):
            self._buffer += os.read(self.fd, 256)
        while len(self._buffer) >= 8:  # a function-3 request is 8 bytes
            frame, self._buffer = self._buffer[:8], self._buffer[8:]
            assert frame[-2:] == crc16(frame[:-2]), frame.hex()
            if frame[0] == self.unit and frame[1] == 3:
                address, count = (int.from_bytes(frame[i : i + 2], "big") for i in (2, 4))
                self._requests.put_nowait((b"", address, count))

    async def close(self) -> None:
        """Stop answering and close the pty end."""
        asyncio.get_running_loop().remove_reader(self.fd)
        await super().close()
        os.close(self.fd)
