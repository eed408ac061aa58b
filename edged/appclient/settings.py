"""Where and how to connect: host, port, TLS, keep-alive, transport and proxy.

The same options as the gateway's uplink, in one small value passed to the connection, which
hands the transport and proxy options straight to paho (``Client(transport=...)``,
``ws_set_options(path=...)``, ``proxy_set(...)``).
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Any, Literal

DEFAULT_DOMAIN = "internetofthings.ibmcloud.com"
DEFAULT_WS_PATH = "/mqtt"
PROXY_KINDS = ("http", "socks4", "socks5")

Transport = Literal["tcp", "websockets"]
ProxyKind = Literal["http", "socks4", "socks5"]


def default_host(org: str, domain: str = DEFAULT_DOMAIN) -> str:
    """The platform's MQTT host for ``org``: ``<org>.messaging.<domain>`` (§1.1)."""
    return f"{org}.messaging.{domain}"


@dataclass(frozen=True, slots=True)
class ProxySettings:
    """An HTTP CONNECT or SOCKS proxy between the client and the broker.

    Args:
        kind: ``http`` (CONNECT), ``socks4`` or ``socks5``.
        host: Proxy host.
        port: Proxy port.
        username: Proxy user, if it asks for one.
        password: Its password. Never shown.
    """

    kind: ProxyKind
    host: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def paho_args(self) -> dict[str, Any]:
        """The keyword arguments of paho's ``Client.proxy_set`` (PySocks' names).

        Raises:
            ValueError: PySocks, which paho's proxy support needs, is not installed.
        """
        try:
            import socks  # type: ignore[import-untyped]
        except ImportError:
            raise ValueError(
                "a proxy needs PySocks (Debian: python3-socks; pip: PySocks)"
            ) from None
        kinds = {"http": socks.HTTP, "socks4": socks.SOCKS4, "socks5": socks.SOCKS5}
        args: dict[str, Any] = {
            "proxy_type": kinds[self.kind],
            "proxy_addr": self.host,
            "proxy_port": self.port,
        }
        if self.username is not None:
            args["proxy_username"] = self.username
            args["proxy_password"] = self.password
        return args


def parse_proxy_url(url: str) -> ProxySettings:
    """``http://[user:password@]host:port`` (or ``socks4://``, ``socks5://``) as settings.

    Raises:
        ValueError: another scheme, or no host or port.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in PROXY_KINDS:
        raise ValueError(f"proxy scheme must be one of {', '.join(PROXY_KINDS)}")
    try:
        port = parts.port
    except ValueError:
        port = None
    if not parts.hostname or port is None:
        raise ValueError("the proxy needs a host and a port, e.g. http://proxy.example:3128")
    kind: ProxyKind = parts.scheme  # type: ignore[assignment]  # checked above
    username = urllib.parse.unquote(parts.username) if parts.username else None
    password = urllib.parse.unquote(parts.password) if parts.password else None
    return ProxySettings(kind, parts.hostname, port, username, password)


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """How to reach the broker.

    Args:
        host: Broker host.
        port: Broker port.
        tls: Use TLS (verified against ``ca_file``, or the system trust store).
        ca_file: CA certificates to verify the broker with.
        keepalive: MQTT keep-alive in seconds (the platform wants 1..3600 for shared
            subscriptions).
        transport: ``tcp``, or ``websockets`` (MQTT over WebSockets; ``wss`` with ``tls``).
        ws_path: The WebSocket path.
        proxy: An HTTP CONNECT or SOCKS proxy to go through, or ``None``.
        connect_timeout: Seconds to wait for the broker's CONNACK (and first SUBACK).
    """

    host: str
    port: int
    tls: bool = True
    ca_file: str | None = None
    keepalive: int = 60
    transport: Transport = "tcp"
    ws_path: str = DEFAULT_WS_PATH
    proxy: ProxySettings | None = None
    connect_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "websockets"):
            raise ValueError(f"transport must be tcp or websockets, not {self.transport!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port {self.port} is out of range")
        if not 0 < self.keepalive <= 3600:
            raise ValueError("keepalive must be 1..3600 seconds")

    @property
    def address(self) -> str:
        """``host:port`` with the transport, for messages."""
        scheme = {"tcp": "mqtts" if self.tls else "mqtt", "websockets": "wss" if self.tls else "ws"}
        path = self.ws_path if self.transport == "websockets" else ""
        return f"{scheme[self.transport]}://{self.host}:{self.port}{path}"
