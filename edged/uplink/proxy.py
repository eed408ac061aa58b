"""Reaching the broker through an HTTP CONNECT or SOCKS5 proxy (blocking; connect thread only).

A proxy is given as a URL: ``http://[user:password@]host[:port]`` (CONNECT, default port 8080),
``socks5://...`` (the gateway resolves the broker's name) or ``socks5h://...`` (the proxy does;
default port 1080). With ``proxy: env`` the usual variables choose: ``https_proxy`` for TLS
(``http_proxy`` without), then ``all_proxy``, lowercase before uppercase, unless ``no_proxy``
names the broker. Credentials are kept in a :class:`~edged.secret.Secret`; ``str()`` of a
:class:`ProxyURL` never shows the password.

:func:`tunnel` returns a socket connected through the proxy to the broker, ready for TLS or
MQTT. A proxy that answers but will not connect raises :class:`ProxyRefused`; network trouble
reaching it raises ``OSError``.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import socket
import struct
from collections.abc import Mapping

from edged.proxyurl import ProxyURL, parse_proxy_url

log = logging.getLogger("edged.uplink")

_MAX_RESPONSE_HEAD = 16384
_SOCKS_ERRORS = {
    1: "general SOCKS server failure",
    2: "connection not allowed by ruleset",
    3: "network unreachable",
    4: "host unreachable",
    5: "connection refused",
    6: "TTL expired",
    7: "command not supported",
    8: "address type not supported",
}
_SOCKS_UNREACHABLE = {3, 4, 5, 6}


class ProxyRefused(Exception):
    """The proxy answered but did not open the tunnel.

    ``upstream`` is True when it says it could not reach the broker (HTTP 502/504, SOCKS
    host or network unreachable): network trouble beyond the proxy, not a refusal.
    """

    def __init__(self, message: str, *, upstream: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.upstream = upstream


def proxy_from_environment(
    host: str, *, tls: bool, environ: Mapping[str, str]
) -> tuple[str, ProxyURL] | None:
    """The proxy the environment names for ``host`` as ``(variable, proxy)``, or None.

    Raises ``ValueError`` (naming the variable, never its value) when the URL is malformed.
    """
    if _bypassed(host, _env(environ, "no_proxy") or ""):
        return None
    for name in ("https_proxy" if tls else "http_proxy", "all_proxy"):
        value = _env(environ, name)
        if value:
            try:
                return name, parse_proxy_url(value)
            except ValueError as exc:
                raise ValueError(f"the {name} environment variable: {exc}") from None
    return None


def _env(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(name)
    return value if value is not None else environ.get(name.upper())


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether ``no_proxy`` (comma-separated names, domains, ``*``) covers ``host``."""
    host = host.lower().rstrip(".")
    for raw in no_proxy.split(","):
        entry = raw.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if entry.startswith("[") and "]" in entry:  # [v6]:port
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:  # name:port; the port is not checked
            entry = entry.split(":")[0]
        entry = entry.lstrip("*").lstrip(".").rstrip(".")
        if host == entry or host.endswith("." + entry):
            return True
        try:
            if "/" in entry and ipaddress.ip_address(host) in ipaddress.ip_network(
                entry, strict=False
            ):
                return True
        except ValueError:
            continue
    return False


def tunnel(proxy: ProxyURL, host: str, port: int, timeout: float) -> socket.socket:
    """A socket connected to ``host:port`` through ``proxy``. Blocking, bounded by ``timeout``.

    Raises ``OSError`` when the proxy cannot be reached, :class:`ProxyRefused` when it will
    not connect us.
    """
    sock = socket.create_connection((proxy.host, proxy.port), timeout=timeout)
    try:
        if proxy.scheme == "http":
            _http_connect(sock, proxy, host, port)
        else:
            _socks5_connect(sock, proxy, host, port, remote_dns=proxy.scheme == "socks5h")
    except BaseException:
        sock.close()
        raise
    return sock


def _http_connect(sock: socket.socket, proxy: ProxyURL, host: str, port: int) -> None:
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username is not None:
        password = proxy.password.reveal() if proxy.password is not None else ""
        token = base64.b64encode(f"{proxy.username}:{password}".encode()).decode("ascii")
        lines.append(f"Proxy-Authorization: Basic {token}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("utf-8"))
    head = _read_head(sock)
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[0].startswith("HTTP/") or not fields[1].isdigit():
        raise ProxyRefused(f"the proxy {proxy} did not answer CONNECT like an HTTP proxy")
    code = int(fields[1])
    if 200 <= code < 300:
        return
    shown = status_line[len(fields[0]) :].strip()
    if code == 407:
        advice = "it wants credentials" if proxy.username is None else "check its credentials"
        raise ProxyRefused(f"the proxy {proxy} refused to connect to {target} ({shown}): {advice}")
    if code in (502, 504):
        raise ProxyRefused(f"the proxy {proxy} could not reach {target} ({shown})", upstream=True)
    raise ProxyRefused(f"the proxy {proxy} refused to connect to {target} ({shown})")


def _read_head(sock: socket.socket) -> bytes:
    """The response head, up to and including the blank line. Reads no byte past it."""
    head = bytearray()
    while not head.endswith(b"\r\n\r\n"):
        # One byte at a time: the bytes after the head belong to the tunnel (a short head).
        byte = sock.recv(1)
        if not byte:
            raise ConnectionResetError("the proxy closed the connection during CONNECT")
        head += byte
        if len(head) > _MAX_RESPONSE_HEAD:
            raise ProxyRefused("the proxy's answer to CONNECT is too long")
    return bytes(head)


def _socks5_connect(
    sock: socket.socket, proxy: ProxyURL, host: str, port: int, *, remote_dns: bool
) -> None:
    methods = b"\x00\x02" if proxy.username is not None else b"\x00"
    sock.sendall(b"\x05" + bytes([len(methods)]) + methods)
    version, method = _recv_exact(sock, 2)
    if version != 5:
        raise ProxyRefused(f"the proxy {proxy} does not speak SOCKS5")
    if method == 0x02 and proxy.username is not None:
        user = proxy.username.encode()
        password = (proxy.password.reveal() if proxy.password is not None else "").encode()
        if len(user) > 255 or len(password) > 255:
            raise ProxyRefused("SOCKS5 user names and passwords are at most 255 bytes")
        sock.sendall(b"\x01" + bytes([len(user)]) + user + bytes([len(password)]) + password)
        if _recv_exact(sock, 2)[1] != 0:
            raise ProxyRefused(f"the proxy {proxy} rejected the user name or password")
    elif method != 0x00:
        wants = "credentials" if proxy.username is None else "an authentication we lack"
        raise ProxyRefused(f"the proxy {proxy} wants {wants} (SOCKS5 method {method})")
    sock.sendall(b"\x05\x01\x00" + _socks_address(host, port, remote_dns=remote_dns))
    reply = _recv_exact(sock, 4)
    if reply[1] != 0:
        reason = _SOCKS_ERRORS.get(reply[1], f"error {reply[1]}")
        raise ProxyRefused(
            f"the proxy {proxy} did not connect to {host}:{port} ({reason})",
            upstream=reply[1] in _SOCKS_UNREACHABLE,
        )
    kind = reply[3]  # the bound address that follows is not needed: skip it
    if kind == 1:
        _recv_exact(sock, 4 + 2)
    elif kind == 4:
        _recv_exact(sock, 16 + 2)
    elif kind == 3:
        _recv_exact(sock, _recv_exact(sock, 1)[0] + 2)
    else:
        raise ProxyRefused(f"the proxy {proxy} sent a malformed SOCKS5 reply")


def _socks_address(host: str, port: int, *, remote_dns: bool) -> bytes:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        if remote_dns:
            name = host.encode("idna")
            return b"\x03" + bytes([len(name)]) + name + struct.pack("!H", port)
        # socks5://: the gateway resolves the name (blocking; this is the connect thread)
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        address = ipaddress.ip_address(info[0][4][0])
    kind = b"\x01" if address.version == 4 else b"\x04"
    return kind + address.packed + struct.pack("!H", port)


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionResetError("the proxy closed the connection during the handshake")
        data += chunk
    return bytes(data)


def log_route(host: str, endpoint: str, *, tls: bool, proxy: ProxyURL | str | None) -> None:
    """Say once (at start) how the broker (``host``, shown as ``endpoint``) is reached when a
    proxy is involved (``proxy``: a URL, ``"env"``, or None)."""
    if proxy == "env":
        try:
            found = proxy_from_environment(host, tls=tls, environ=os.environ)
        except ValueError:
            return  # every connection attempt reports it
        if found is None:
            log.info("no proxy environment variable applies to %s: connecting directly", host)
            return
        log.info("reaching %s through the proxy %s (%s)", endpoint, found[1], found[0])
    elif proxy is not None:
        log.info("reaching %s through the proxy %s", endpoint, proxy)
