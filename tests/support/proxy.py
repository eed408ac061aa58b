"""A tiny local HTTP CONNECT / SOCKS5 proxy for tests, on one thread of its own.

It tunnels to any loopback target it is asked for, records what it was asked, and misbehaves on
request: refuse every CONNECT with an HTTP status (or SOCKS reply code), demand credentials, or
drop every open tunnel at once (:meth:`LocalProxy.drop_all`), as a proxy restarting would.
"""

from __future__ import annotations

import base64
import contextlib
import ipaddress
import selectors
import socket
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType

_CHUNK = 65536


class _NeedMore(Exception):
    """The handshake bytes so far are incomplete."""


@dataclass(eq=False)
class _Conn:
    client: socket.socket
    buf: bytearray = field(default_factory=bytearray)
    upstream: socket.socket | None = None
    stage: str = "greeting"  # SOCKS: greeting, auth, request; HTTP: request; both: tunnel


class LocalProxy:
    """An HTTP CONNECT (``kind="http"``) or SOCKS5 (``kind="socks5"``) proxy on 127.0.0.1.

    ``refuse``: answer every request with this HTTP status (or SOCKS5 reply code) instead.
    ``credentials``: require this user name and password.
    """

    def __init__(
        self,
        kind: str = "http",
        *,
        refuse: int | None = None,
        credentials: tuple[str, str] | None = None,
    ) -> None:
        assert kind in ("http", "socks5")
        self.kind = kind
        self.refuse = refuse
        self.credentials = credentials
        self.targets: list[tuple[str, int]] = []
        """Every target a tunnel was opened to."""
        self.requests = 0
        """Tunnel requests received (opened or refused)."""
        self.refused = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._selector = selectors.DefaultSelector()
        self._conns: set[_Conn] = set()
        self._commands: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="test-proxy", daemon=True)

    @property
    def url(self) -> str:
        """The proxy's URL, with the credentials when it requires them."""
        auth = f"{self.credentials[0]}:{self.credentials[1]}@" if self.credentials else ""
        return f"{self.kind}://{auth}127.0.0.1:{self.port}"

    @property
    def open_tunnels(self) -> int:
        with self._lock:
            return sum(1 for conn in self._conns if conn.upstream is not None)

    def start(self) -> LocalProxy:
        self._selector.register(self._listener, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Close every connection and the listener; join the thread."""
        self._call(self._shutdown)
        self._thread.join(5)
        for sock in (self._wake_r, self._wake_w, self._listener):
            sock.close()
        self._selector.close()

    def drop_all(self) -> None:
        """Close every open connection (both sides) now; new ones are still accepted."""
        done = threading.Event()

        def drop() -> None:
            for conn in list(self._conns):
                self._close(conn)
            done.set()

        self._call(drop)
        done.wait(5)

    def __enter__(self) -> LocalProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- the proxy's thread --------------------------------------------------------------------

    def _call(self, command: Callable[[], None]) -> None:
        with self._lock:
            self._commands.append(command)
        self._wake_w.send(b"x")

    def _shutdown(self) -> None:
        for conn in list(self._conns):
            self._close(conn)
        self._stopping = True

    def _serve(self) -> None:
        while not self._stopping:
            for key, _ in self._selector.select():
                if key.data == "wake":
                    self._wake_r.recv(4096)
                    with self._lock:
                        commands, self._commands = self._commands, []
                    for command in commands:
                        command()
                elif key.data is None:
                    client, _ = self._listener.accept()
                    conn = _Conn(client, stage="request" if self.kind == "http" else "greeting")
                    with self._lock:
                        self._conns.add(conn)
                    self._selector.register(client, selectors.EVENT_READ, (conn, True))
                else:
                    conn, from_client = key.data
                    if conn in self._conns:
                        self._readable(conn, from_client)

    def _readable(self, conn: _Conn, from_client: bool) -> None:
        source = conn.client if from_client else conn.upstream
        assert source is not None
        try:
            data = source.recv(_CHUNK)
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        if conn.stage == "tunnel":
            other = conn.upstream if from_client else conn.client
            assert other is not None
            try:
                other.sendall(data)
            except OSError:
                self._close(conn)
            return
        conn.buf += data
        try:
            if self.kind == "http":
                self._http(conn)
            else:
                self._socks(conn)
        except _NeedMore:
            return
        except (OSError, ValueError, IndexError, struct.error):
            self._close(conn)

    def _http(self, conn: _Conn) -> None:
        end = conn.buf.find(b"\r\n\r\n")
        if end < 0:
            raise _NeedMore
        head, rest = bytes(conn.buf[:end]).decode("latin-1"), bytes(conn.buf[end + 4 :])
        lines = head.split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in lines[1:] if ":" in line)
        }
        self.requests += 1
        if method != "CONNECT":
            self._answer(conn, b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            return
        if self.credentials is not None:
            expected = base64.b64encode(":".join(self.credentials).encode()).decode()
            if headers.get("proxy-authorization") != f"Basic {expected}":
                self.refused += 1
                self._answer(
                    conn,
                    b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                    b'Proxy-Authenticate: Basic realm="test"\r\n\r\n',
                )
                return
        if self.refuse is not None:
            self.refused += 1
            self._answer(conn, f"HTTP/1.1 {self.refuse} Refused By Test\r\n\r\n".encode())
            return
        host, _, port = target.rpartition(":")
        if not self._open(conn, host.strip("[]"), int(port)):
            self._answer(conn, b"HTTP/1.1 502 Bad Gateway\r\n\r\n")
            return
        conn.client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._tunnel(conn, rest)

    def _socks(self, conn: _Conn) -> None:
        buf = conn.buf
        while True:
            if conn.stage == "greeting":
                if len(buf) < 2 or len(buf) < 2 + buf[1]:
                    raise _NeedMore
                methods = bytes(buf[2 : 2 + buf[1]])
                del buf[: 2 + buf[1]]
                wanted = 2 if self.credentials is not None else 0
                if wanted not in methods:
                    self._answer(conn, b"\x05\xff")
                    return
                conn.client.sendall(bytes([5, wanted]))
                conn.stage = "auth" if wanted == 2 else "request"
            elif conn.stage == "auth":
                if len(buf) < 2 or len(buf) < 3 + buf[1] or len(buf) < 3 + buf[1] + buf[2 + buf[1]]:
                    raise _NeedMore
                ulen = buf[1]
                plen = buf[2 + ulen]
                user = bytes(buf[2 : 2 + ulen]).decode()
                password = bytes(buf[3 + ulen : 3 + ulen + plen]).decode()
                del buf[: 3 + ulen + plen]
                if (user, password) != self.credentials:
                    self.refused += 1
                    self._answer(conn, b"\x01\x01")
                    return
                conn.client.sendall(b"\x01\x00")
                conn.stage = "request"
            else:
                self._socks_request(conn)
                return

    def _socks_request(self, conn: _Conn) -> None:
        buf = conn.buf
        if len(buf) < 5:
            raise _NeedMore
        kind = buf[3]
        if kind == 1:
            size = 4 + 4 + 2
        elif kind == 4:
            size = 4 + 16 + 2
        else:
            size = 4 + 1 + buf[4] + 2
        if len(buf) < size:
            raise _NeedMore
        if kind == 3:
            host = bytes(buf[5 : 5 + buf[4]]).decode("idna")
        else:
            host = str(ipaddress.ip_address(bytes(buf[4 : size - 2])))
        (port,) = struct.unpack("!H", buf[size - 2 : size])
        rest = bytes(buf[size:])
        self.requests += 1
        failure = b"\x05%c\x00\x01\x00\x00\x00\x00\x00\x00"
        if self.refuse is not None:
            self.refused += 1
            self._answer(conn, failure % self.refuse)
            return
        if not self._open(conn, host, port):
            self._answer(conn, failure % 5)
            return
        conn.client.sendall(b"\x05\x00\x00\x01\x7f\x00\x00\x01\x00\x00")
        self._tunnel(conn, rest)

    def _open(self, conn: _Conn, host: str, port: int) -> bool:
        try:
            conn.upstream = socket.create_connection((host, port), timeout=2)
        except OSError:
            return False
        conn.upstream.settimeout(None)
        self.targets.append((host, port))
        return True

    def _tunnel(self, conn: _Conn, rest: bytes) -> None:
        assert conn.upstream is not None
        conn.stage = "tunnel"
        conn.buf.clear()
        if rest:
            conn.upstream.sendall(rest)
        self._selector.register(conn.upstream, selectors.EVENT_READ, (conn, False))

    def _answer(self, conn: _Conn, response: bytes) -> None:
        """Send a refusal and close."""
        try:
            conn.client.sendall(response)
        finally:
            self._close(conn)

    def _close(self, conn: _Conn) -> None:
        with self._lock:
            self._conns.discard(conn)
        for sock in (conn.client, conn.upstream):
            if sock is None:
                continue
            with contextlib.suppress(KeyError, ValueError):
                self._selector.unregister(sock)
            sock.close()
