"""A small HTTPS (or plain HTTP) image server on loopback, with ways to misbehave."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from edged.devbroker import LocalCA

CUT_ONCE = "cut_once"
"""The first full request gets half the body, then the connection closes."""
TRUNCATED = "truncated"
"""Every response announces the whole length and sends half of what it promised."""
NO_RANGE = "no_range"
"""Range requests are answered 200 with the whole body."""
CHUNKED = "chunked"
"""No Content-Length: the body is sent chunked."""


@dataclass
class Served:
    """What the server holds and what it saw."""

    files: dict[str, bytes] = field(default_factory=dict)
    modes: dict[str, set[str]] = field(default_factory=dict)
    announce: dict[str, int] = field(default_factory=dict)
    """A Content-Length to announce; then half the file (if any) is sent and the connection
    held until ``hold`` is set."""
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    """(path, Range header) per request."""
    redirects: dict[str, str] = field(default_factory=dict)
    hold: threading.Event = field(default_factory=threading.Event)
    """Cleared: an ``announce`` path waits for it before closing (a stalled download)."""

    def __post_init__(self) -> None:
        self.hold.set()


class _Handler(http.server.BaseHTTPRequestHandler):
    served: Served

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        served = self.served
        path = self.path
        served.requests.append((path, self.headers.get("Range")))
        if path in served.redirects:
            self.send_response(302)
            self.send_header("Location", served.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path in served.announce:
            self.send_response(200)
            self.send_header("Content-Length", str(served.announce[path]))
            self.send_header("ETag", '"v1"')
            self.end_headers()
            held = served.files.get(path, b"")
            self.wfile.write(held[: len(held) // 2])
            self.wfile.flush()
            served.hold.wait(10)
            return
        body = served.files.get(path)
        if body is None:
            self.send_error(404)
            return
        modes = served.modes.get(path, set())
        start = 0
        wanted = self.headers.get("Range")
        if wanted and NO_RANGE not in modes:
            start = int(wanted.removeprefix("bytes=").rstrip("-"))
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        self.send_header("ETag", '"v1"')
        part = body[start:]
        if CHUNKED in modes:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for offset in range(0, len(part), 1000):
                piece = part[offset : offset + 1000]
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        self.send_header("Content-Length", str(len(part)))
        self.end_headers()
        if TRUNCATED in modes or (CUT_ONCE in modes and not wanted):
            modes.discard(CUT_ONCE)
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(part)


@contextmanager
def image_server(ca: LocalCA | None, served: Served) -> Iterator[str]:
    """Serve ``served`` on a free loopback port; yields the base URL (``https://localhost:N``)."""
    handler = type("Handler", (_Handler,), {"served": served})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    scheme = "http"
    if ca is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(ca.cert_file, ca.key_file)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"{scheme}://localhost:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
