"""MQTT over WebSockets: paho's RFC 6455 client framing around a socket we connected ourselves.

paho's ``_WebsocketWrapper`` (paho-mqtt 2.1 and 2.2; ``tests/unit/uplink/test_paho_canary.py``
checks its interface) takes a connected socket, performs the HTTP upgrade in its constructor
(blocking: run it in the connect thread) and then behaves like a socket for paho: ``send`` wraps
each write in one masked binary frame, ``recv`` returns payload bytes of one frame at a time.
It reads from the socket only the bytes of the frame it is decoding, so readiness of the socket
(and ``pending()`` of a TLS socket) keeps telling the truth about what is left to read.

:class:`WebSocket` adds what the uplink needs on top: ``setsockopt`` for the driver's quick-ACK,
and masking of the control frames it sends (paho answers a PING or a CLOSE unmasked, which
RFC 6455 forbids a client to do and a strict server answers by closing the connection).
"""

from __future__ import annotations

import socket
import ssl

from paho.mqtt.client import WebsocketConnectionError, _WebsocketWrapper

__all__ = ["WebSocket", "WebsocketConnectionError"]


class WebSocket(_WebsocketWrapper):
    """A connected MQTT-over-WebSocket stream on ``sock`` (see the module docstring)."""

    def __init__(
        self, sock: socket.socket | ssl.SSLSocket, host: str, port: int, *, tls: bool, path: str
    ) -> None:
        """Upgrade ``sock`` (connected; TLS handshake done when ``tls``) to a WebSocket at
        ``path``, with the sub-protocol ``mqtt``. Blocking, bounded by the socket's timeout.

        Raises ``WebsocketConnectionError`` when the server does not upgrade, ``OSError`` on
        network trouble.
        """
        super().__init__(sock, host, port, tls, path, None)

    @property
    def raw(self) -> socket.socket:
        """The underlying (TLS) socket."""
        sock: socket.socket = self._socket
        return sock

    def setsockopt(self, level: int, option: int, value: int) -> None:
        """Set an option on the underlying TCP socket."""
        self._socket.setsockopt(level, option, value)

    def settimeout(self, value: float | None) -> None:
        """Set the underlying socket's timeout (blocking mode only)."""
        self._socket.settimeout(value)

    def _create_frame(self, opcode: int, data: bytearray, do_masking: int = 1) -> bytearray:
        frame: bytearray = super()._create_frame(opcode, data, 1)  # a client always masks
        return frame

    def __repr__(self) -> str:
        return f"<WebSocket on {self._socket!r}>"
