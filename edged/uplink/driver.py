"""Binds a paho client's socket to the asyncio loop: reader, writer and the ``loop_misc`` timer.

paho announces its socket through callbacks (open, close, want-write, no-more-write); this
class turns them into ``add_reader`` / ``add_writer`` registrations, so paho reads, writes and
keeps its keepalive only when the loop says the socket is ready. It never blocks.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt

from edged.uplink.pahoclient import LoopClient
from edged.uplink.websocket import WebSocket

log = logging.getLogger("edged.uplink")

MISC_INTERVAL = 1.0
"""Seconds between paho ``loop_misc`` calls (keepalive pings and their timeout)."""

# Linux delays ACKs by up to 40 ms. A broker without TCP_NODELAY (mosquitto's default) then
# holds back its next PUBACKs or a command until that ACK arrives. Quick ACK mode has to be
# re-armed after each read.
_QUICKACK: int | None = getattr(socket, "TCP_QUICKACK", None)

_DRAIN_ROUNDS = 64
"""``loop_read()`` calls per read event on bytes already read (then the rest waits a loop turn)."""


class LoopDriver:
    """Drives ``client``'s I/O from ``loop`` (both fixed once :meth:`bind` is called).

    ``after_read`` runs after each read event (PUBACKs may have arrived), ``drained`` when
    paho's write buffer is empty, ``failed`` with a reason when paho raised while doing I/O
    (the socket is closed by then).
    """

    def __init__(
        self,
        client: LoopClient,
        *,
        after_read: Callable[[], None],
        drained: Callable[[], None],
        failed: Callable[[str], None],
        force_close: Callable[[], None],
    ) -> None:
        self._client = client
        self._after_read = after_read
        self._drained = drained
        self._failed = failed
        self._force_close = force_close
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sock: Any = None
        self._pending: Callable[[], int] | None = None
        self._misc_handle: asyncio.TimerHandle | None = None
        self._again: asyncio.Handle | None = None
        client.on_socket_open = self._opened
        client.on_socket_close = self._closed
        client.on_socket_register_write = self._want_write
        client.on_socket_unregister_write = self._written

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Use ``loop`` from now on (paho calls back only from inside our own calls)."""
        self._loop = loop

    def stop_timer(self) -> None:
        """Cancel the ``loop_misc`` timer."""
        if self._misc_handle is not None:
            self._misc_handle.cancel()
            self._misc_handle = None

    # -- paho's socket callbacks ---------------------------------------------------------------

    def _opened(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        loop = self._loop
        assert loop is not None, "bind() first"
        self.sock = sock
        # A TLS socket (or a WebSocket over one) may hold decrypted bytes the fd won't signal.
        self._pending = sock.pending if isinstance(sock, ssl.SSLSocket | WebSocket) else None
        loop.add_reader(sock, self._readable)
        self.stop_timer()
        self._misc_handle = loop.call_later(MISC_INTERVAL, self._misc)

    def _closed(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_reader(sock)
        self._loop.remove_writer(sock)
        self.stop_timer()
        if self._again is not None:
            self._again.cancel()
            self._again = None
        self.sock = None
        self._pending = None

    def _want_write(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.add_writer(sock, self._writable)

    def _written(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        assert self._loop is not None
        self._loop.remove_writer(sock)
        self._drained()

    # -- loop callbacks ------------------------------------------------------------------------

    def _readable(self) -> None:
        client = self._client
        try:
            client.loop_read()
            sock = self.sock
            # Bytes the socket will never signal again: paho may stop after a few packets while
            # more sit in LoopClient's read buffer, and TLS (under a WebSocket too) may hold
            # decrypted bytes. Drain
            # both, but under a flood come back on the next loop turn instead of starving it.
            rounds = _DRAIN_ROUNDS
            pending = self._pending
            while sock is not None and (client.buffered() or (pending is not None and pending())):
                if not rounds:
                    self._read_again()
                    break
                rounds -= 1
                client.loop_read()
                sock = self.sock
                pending = self._pending
            if _QUICKACK is not None and sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)
        except Exception as exc:  # noqa: BLE001 - a broken packet must not kill the loop
            self._fail(f"error while reading from the broker: {exc!r}")
        self._after_read()

    def _read_again(self) -> None:
        if self._again is None and self._loop is not None:
            self._again = self._loop.call_soon(self._read_later)

    def _read_later(self) -> None:
        self._again = None
        if self.sock is not None:
            self._readable()

    def _writable(self) -> None:
        try:
            self._client.loop_write()
        except Exception as exc:  # noqa: BLE001
            self._fail(f"error while writing to the broker: {exc!r}")

    def _misc(self) -> None:
        self._misc_handle = None
        try:
            self._client.loop_misc()  # sends PINGREQ; closes the socket if PINGRESP is overdue
        except Exception as exc:  # noqa: BLE001
            self._fail(f"error in the keepalive timer: {exc!r}")
        if self.sock is not None and self._loop is not None and self._misc_handle is None:
            self._misc_handle = self._loop.call_later(MISC_INTERVAL, self._misc)

    def _fail(self, reason: str) -> None:
        # The session logs the loss once, with this reason; the traceback only helps a developer.
        log.debug("%s; closing the connection", reason, exc_info=True)
        if self.sock is not None:
            self._force_close()
        self._failed(reason)
