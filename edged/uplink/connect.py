"""Opening the network connection: the uplink's one blocking edge, run in a short-lived thread.

DNS, the TCP connect (direct or through a proxy: :mod:`edged.uplink.proxy`), the TLS handshake
and the WebSocket upgrade (:mod:`edged.uplink.websocket`) block, so :func:`open_connection` runs
them in a thread of its own (started per attempt, finished within ``connect_timeout``). It only
builds a connected stream; it never touches the paho client, which lives on the event loop thread.
Failures come back as :class:`ConnectError` with a message an operator can act on.
"""

from __future__ import annotations

import asyncio
import enum
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from typing import Generic, Literal, TypeVar

from edged.proxyurl import ProxyURL
from edged.uplink.proxy import ProxyRefused, proxy_from_environment, tunnel
from edged.uplink.websocket import WebSocket, WebsocketConnectionError

T = TypeVar("T")

Stream = socket.socket | WebSocket
"""What a connection attempt hands to paho: a (TLS) socket, or a WebSocket on one."""

ProxySetting = ProxyURL | Literal["env"] | None
"""A proxy URL, ``"env"`` (the environment variables decide) or None (connect directly)."""

_HOSTNAME_MISMATCH = 62  # X509_V_ERR_HOSTNAME_MISMATCH
_IP_MISMATCH = 64  # X509_V_ERR_IP_ADDRESS_MISMATCH


class FailureKind(enum.Enum):
    """Why an attempt failed; decides the log level and the backoff schedule."""

    UNREACHABLE = "unreachable"  # DNS, refused, timeout, reset: the network or the broker is down
    TLS = "tls"  # certificate not trusted, hostname mismatch, handshake failure
    CA_FILE = "ca-file"  # the configured CA file cannot be read
    TIMEOUT = "timeout"  # TCP/TLS up, but no CONNACK in time
    REFUSED_AUTH = "refused-auth"  # CONNACK: bad username/password, not authorized, banned
    REFUSED_ID = "refused-client-id"  # CONNACK: client identifier not valid
    REFUSED_PROTOCOL = "refused-protocol"  # CONNACK: unsupported protocol version
    REFUSED_BUSY = "refused-busy"  # CONNACK: server unavailable / busy / quota: try again later
    REFUSED_OTHER = "refused"  # any other CONNACK refusal
    PROXY = "proxy"  # the proxy refused the tunnel, wants credentials, or is misconfigured
    WEBSOCKET = "websocket"  # the server did not upgrade to a WebSocket (wrong path or port)


class ConnectError(Exception):
    """An attempt to connect failed; ``message`` says what to check."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """A client context: TLS >= 1.2, certificate and hostname checked, trusting ``ca_file`` or
    the system store. Reads the file (blocking)."""
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConnectError(
            FailureKind.CA_FILE,
            f"cannot load the CA file {ca_file}: {_reason(exc)}: check platform.ca_file",
        ) from exc
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def open_connection(
    host: str,
    port: int,
    timeout: float,
    *,
    tls: bool,
    ca_file: str | None,
    websocket_path: str | None = None,
    proxy: ProxySetting = None,
    environ: Mapping[str, str] | None = None,
) -> Stream:
    """Connect to ``host:port``: through ``proxy`` if any, then the TLS handshake when ``tls``,
    then the WebSocket upgrade at ``websocket_path`` when given. Blocking.

    ``proxy`` is a :class:`~edged.uplink.proxy.ProxyURL`, ``"env"`` (the proxy variables of
    ``environ``, by default ``os.environ``, decide) or None. ``timeout`` bounds the steps
    together (name resolution is bounded by the system resolver). Raises
    :class:`ConnectError`. paho switches the returned stream to non-blocking.
    """
    deadline = time.monotonic() + timeout
    context = tls_context(ca_file) if tls else None
    if proxy == "env":
        proxy = _proxy_from_environment(host, tls, os.environ if environ is None else environ)
    sock = _direct(host, port, timeout) if proxy is None else _through(proxy, host, port, timeout)
    try:
        # paho writes each packet with its own send(); without this, Nagle holds a small packet
        # (a command result, a PUBACK) until the broker ACKs the previous one.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if context is not None:
            sock = _tls_handshake(sock, context, host, port, deadline, timeout, ca_file)
        if websocket_path is None:
            return sock
        return _upgrade(sock, host, port, tls, websocket_path, deadline, timeout)
    except BaseException:
        sock.close()
        raise


def _proxy_from_environment(host: str, tls: bool, environ: Mapping[str, str]) -> ProxyURL | None:
    try:
        found = proxy_from_environment(host, tls=tls, environ=environ)
    except ValueError as exc:
        raise ConnectError(FailureKind.PROXY, f"platform.proxy is 'env', but {exc}") from None
    return None if found is None else found[1]


def _direct(host: str, port: int, timeout: float) -> socket.socket:
    try:
        return socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        raise ConnectError(
            FailureKind.UNREACHABLE, _network_reason(exc, host, port, timeout)
        ) from exc


def _through(proxy: ProxyURL, host: str, port: int, timeout: float) -> socket.socket:
    try:
        return tunnel(proxy, host, port, timeout)
    except ProxyRefused as exc:
        kind = FailureKind.UNREACHABLE if exc.upstream else FailureKind.PROXY
        raise ConnectError(kind, exc.message) from exc
    except socket.gaierror as exc:
        raise ConnectError(
            FailureKind.UNREACHABLE,
            f"cannot resolve the host name of the proxy {proxy}: {exc.strerror or exc}",
        ) from exc
    except TimeoutError as exc:
        raise ConnectError(
            FailureKind.UNREACHABLE,
            f"no answer from the proxy {proxy} within {timeout:g} s (connecting to {host}:{port})",
        ) from exc
    except OSError as exc:
        raise ConnectError(
            FailureKind.UNREACHABLE,
            f"cannot use the proxy {proxy} to reach {host}:{port}: {_reason(exc)}",
        ) from exc


def _tls_handshake(  # noqa: PLR0917 - a private step of open_connection
    sock: socket.socket,
    context: ssl.SSLContext,
    host: str,
    port: int,
    deadline: float,
    timeout: float,
    ca_file: str | None,
) -> ssl.SSLSocket:
    tls_sock = context.wrap_socket(sock, server_hostname=host, do_handshake_on_connect=False)
    try:
        tls_sock.settimeout(max(0.001, deadline - time.monotonic()))
        tls_sock.do_handshake()
    except ssl.SSLCertVerificationError as exc:
        tls_sock.close()
        raise ConnectError(FailureKind.TLS, _verify_reason(exc, host, port, ca_file)) from exc
    except TimeoutError as exc:
        tls_sock.close()
        raise ConnectError(
            FailureKind.UNREACHABLE, _network_reason(exc, host, port, timeout)
        ) from exc
    except OSError as exc:  # ssl.SSLError, or a reset/EOF from a server that does not speak TLS
        tls_sock.close()
        raise ConnectError(
            FailureKind.TLS,
            f"TLS handshake with {host}:{port} failed: {_reason(exc)}"
            " (is this the broker's TLS port, speaking TLS 1.2 or newer?)",
        ) from exc
    except BaseException:
        tls_sock.close()
        raise
    return tls_sock


def _upgrade(  # noqa: PLR0917 - a private step of open_connection
    sock: socket.socket, host: str, port: int, tls: bool, path: str, deadline: float, timeout: float
) -> WebSocket:
    url = f"{'wss' if tls else 'ws'}://{host}:{port}{path}"
    sock.settimeout(max(0.001, deadline - time.monotonic()))
    try:
        return WebSocket(sock, host, port, tls=tls, path=path)
    except WebsocketConnectionError as exc:
        raise ConnectError(
            FailureKind.WEBSOCKET,
            f"{url} did not accept a WebSocket for MQTT ({exc}): check platform.ws_path and"
            " that this port serves MQTT over WebSockets",
        ) from exc
    except TimeoutError as exc:
        raise ConnectError(
            FailureKind.UNREACHABLE,
            f"no answer to the WebSocket upgrade at {url} within {timeout:g} s",
        ) from exc
    except OSError as exc:
        raise ConnectError(
            FailureKind.UNREACHABLE, f"the WebSocket upgrade at {url} failed: {_reason(exc)}"
        ) from exc


def _verify_reason(
    exc: ssl.SSLCertVerificationError, host: str, port: int, ca_file: str | None
) -> str:
    if exc.verify_code in (_HOSTNAME_MISMATCH, _IP_MISMATCH):
        return (
            f"TLS: the broker's certificate is not valid for the host name {host}"
            f" ({exc.verify_message}): connect with a name the certificate lists"
            " (platform.host)"
        )
    trust = f"the CA file {ca_file}" if ca_file else "the system CA store"
    return (
        f"TLS: the certificate of {host}:{port} is not trusted by {trust}"
        f" ({exc.verify_message or _reason(exc)}): check platform.ca_file"
    )


def _network_reason(exc: OSError, host: str, port: int, timeout: float) -> str:
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the broker's host name {host}: {exc.strerror or exc}"
    if isinstance(exc, TimeoutError):
        return f"no answer from {host}:{port} within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return f"{host}:{port} refused the connection (is the broker running on that port?)"
    return f"cannot connect to {host}:{port}: {_reason(exc)}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason).replace("_", " ").lower()
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


class ThreadCall(Generic[T]):
    """Runs one blocking call in its own daemon thread and delivers the result to the loop.

    Unlike the loop's default executor this leaves no idle worker thread behind, and a call
    that is abandoned (the awaiting task was cancelled) still closes what it produced through
    ``discard``. :meth:`finished` lets shutdown wait for the thread, bounded.
    """

    def __init__(self, func: Callable[[], T], *, name: str, discard: Callable[[T], None]) -> None:
        loop = asyncio.get_running_loop()
        self.result: asyncio.Future[T] = loop.create_future()
        self._done = asyncio.Event()
        self._taken = False
        self._discard = discard

        def deliver(outcome: T | None, error: BaseException | None) -> None:
            self._done.set()
            if self.result.done():  # abandoned: nobody takes the socket
                if error is None:
                    discard(outcome)  # type: ignore[arg-type]
                return
            if error is None:
                self.result.set_result(outcome)  # type: ignore[arg-type]
            else:
                self.result.set_exception(error)

        def target() -> None:
            try:
                outcome = func()
            except BaseException as exc:  # noqa: BLE001 - handed to the loop, nothing is swallowed
                error: BaseException | None = exc
                outcome = None
            else:
                error = None
            try:
                loop.call_soon_threadsafe(deliver, outcome, error)
            except RuntimeError:  # the loop is closed: clean up here
                if error is None and outcome is not None:
                    discard(outcome)

        self._thread = threading.Thread(target=target, name=name, daemon=True)
        self._thread.start()

    def take(self) -> T:
        """The result (raising the call's exception); from now on the caller owns it."""
        value = self.result.result()
        self._taken = True
        return value

    def abandon(self) -> None:
        """Nobody will take the result: cancel it, or discard it if it already arrived."""
        if not self.result.done():
            self.result.cancel()  # deliver() discards what the thread still produces
        elif not (self._taken or self.result.cancelled() or self.result.exception()):
            self._taken = True
            self._discard(self.result.result())

    async def finished(self, within: float) -> bool:
        """Wait (at most ``within`` seconds) until the thread is done; True when it is."""
        try:
            async with asyncio.timeout(within):
                await self._done.wait()
        except TimeoutError:
            return False
        self._thread.join()  # it has returned already; this only reaps it
        return True
