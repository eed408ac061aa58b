"""A loopback TCP proxy between the uplink and mosquitto that misbehaves on request.

Each accepted connection becomes a :class:`Link` to the broker, pumped by two tasks on the test's
event loop. A test reaches the current link through :attr:`FaultProxy.links` and can make it
inject bytes towards the client, stop reading from the client (TCP backpressure builds up),
hold or drop what the broker sends, reset the client side (RST) or half-close it (FIN).
With ``ssl`` the proxy terminates TLS towards the client and talks plain MQTT to the broker;
bytes held and then released go out in one TLS write, so one record carries many packets.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import struct
import time
from dataclasses import dataclass, field
from enum import Enum

CHUNK = 65536


class Down(Enum):
    """What a link does with bytes from the broker."""

    FORWARD = "forward"
    HOLD = "hold"  # keep them until release()
    DROP = "drop"  # discard them (a broker that went silent)


@dataclass
class Link:
    """One proxied connection: client side, broker side and the two pumps between them."""

    client_reader: asyncio.StreamReader
    client_writer: asyncio.StreamWriter
    broker_reader: asyncio.StreamReader
    broker_writer: asyncio.StreamWriter
    down: Down = Down.FORWARD
    held: bytearray = field(default_factory=bytearray)
    dropped: bytearray = field(default_factory=bytearray)
    sent_up: list[tuple[float, bytes]] = field(default_factory=list)
    """Every chunk forwarded from the client to the broker, with its ``time.monotonic()``."""
    client_closed: float | None = None
    """When the client closed its side (``time.monotonic()``), if it has."""
    _reading_up: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self._reading_up.set()

    # -- faults -------------------------------------------------------------------------------

    def inject(self, data: bytes) -> None:
        """Send ``data`` to the client as if the broker had sent it."""
        self.client_writer.write(data)

    def inject_raw(self, data: bytes) -> None:
        """Write ``data`` straight to the client's socket, under TLS if there is TLS."""
        sock = self.client_writer.get_extra_info("socket")
        os.write(sock.fileno(), data)

    def stop_reading_client(self) -> None:
        """Stop reading from the client: its writes back up in the kernel, then in paho."""
        self._reading_up.clear()
        transport = self.client_writer.transport
        assert isinstance(transport, asyncio.ReadTransport)
        transport.pause_reading()

    def release(self) -> None:
        """Send everything held from the broker to the client in one write, then forward."""
        data, self.held = bytes(self.held), bytearray()
        self.down = Down.FORWARD
        if data:
            self.client_writer.write(data)

    def reset(self) -> None:
        """Abort the client side with SO_LINGER 0 (the client sees ECONNRESET); drop the broker."""
        sock = self.client_writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.client_writer.transport.abort()
        self.broker_writer.transport.abort()

    def half_close(self) -> None:
        """Send FIN to the client (it reads end-of-stream) and keep the rest open."""
        self.client_writer.write_eof()

    # -- pumps --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Pump both directions until either side closes, then close both."""
        up = asyncio.create_task(self._pump_up(), name="faultproxy-up")
        down = asyncio.create_task(self._pump_down(), name="faultproxy-down")
        try:
            await asyncio.wait({up, down}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (up, down):
                task.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self.client_writer.transport.abort()
            self.broker_writer.transport.abort()

    async def _pump_up(self) -> None:
        while True:
            await self._reading_up.wait()
            try:
                data = await self.client_reader.read(CHUNK)
            except OSError:
                data = b""
            if not data:
                self.client_closed = time.monotonic()
                return
            self.sent_up.append((time.monotonic(), data))
            self.broker_writer.write(data)
            await self.broker_writer.drain()

    async def _pump_down(self) -> None:
        while True:
            try:
                data = await self.broker_reader.read(CHUNK)
            except OSError:
                return
            if not data:
                return
            if self.down is Down.HOLD:
                self.held += data
            elif self.down is Down.DROP:
                self.dropped += data
            else:
                self.client_writer.write(data)
                await self.client_writer.drain()


class FaultProxy:
    """Listens on a free 127.0.0.1 port and proxies every connection to ``broker_port``.

    ``receive_buffer`` fixes SO_RCVBUF of the accepted sockets, so a link that stops reading
    backs up after that many bytes instead of after the kernel's autotuned maximum.
    """

    def __init__(
        self,
        broker_port: int,
        *,
        tls: ssl.SSLContext | None = None,
        receive_buffer: int | None = None,
    ) -> None:
        self.broker_port = broker_port
        self.links: list[Link] = []
        self._tls = tls
        self._receive_buffer = receive_buffer
        self._server: asyncio.Server | None = None
        self._runs: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> FaultProxy:
        """Start listening (``self.port`` is set then)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if self._receive_buffer is not None:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._receive_buffer)
        listener.bind(("127.0.0.1", 0))
        self.port = int(listener.getsockname()[1])
        self._server = await asyncio.start_server(
            self._accepted, sock=listener, ssl=self._tls, limit=CHUNK
        )
        return self

    @property
    def current(self) -> Link:
        """The most recently accepted link."""
        assert self.links, "no connection through the proxy yet"
        return self.links[-1]

    async def _accepted(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._runs.add(task)  # close() cancels it wherever it is
        try:
            try:
                broker_reader, broker_writer = await asyncio.open_connection(
                    "127.0.0.1", self.broker_port, limit=CHUNK
                )
            except OSError:
                writer.transport.abort()
                return
            link = Link(reader, writer, broker_reader, broker_writer)
            self.links.append(link)
            await link.run()
        finally:
            self._runs.discard(task)
            writer.transport.abort()

    async def close(self) -> None:
        """Stop listening and close every link."""
        if self._server is not None:
            self._server.close()
        for link in self.links:
            link.client_writer.transport.abort()
            link.broker_writer.transport.abort()
        # Aborted transports end the pumps. Cancelling a handler task is the last resort:
        # Python 3.11's start_server reports a cancelled handler as an error.
        runs = list(self._runs)
        if runs:
            _, pending = await asyncio.wait(runs, timeout=2)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2):
                    await self._server.wait_closed()
            self._server = None


def packet_types(data: bytes) -> list[int]:
    """The MQTT control packet types (high nibble of each fixed header) framed in ``data``.

    Stops at an incomplete packet at the end.
    """
    types: list[int] = []
    pos = 0
    while pos < len(data):
        length, multiplier, cursor = 0, 1, pos + 1
        while True:
            if cursor >= len(data):
                return types
            byte = data[cursor]
            length += (byte & 0x7F) * multiplier
            multiplier *= 128
            cursor += 1
            if not byte & 0x80:
                break
        if cursor + length > len(data):
            return types
        types.append(data[pos] >> 4)
        pos = cursor + length
    return types
