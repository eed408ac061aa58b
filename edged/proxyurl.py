"""Proxy URLs as config values: parsed, validated, shown without their password.

``http://[user:password@]host[:port]`` (HTTP CONNECT, default port 8080), ``socks5://...`` (the
gateway resolves the broker's name) or ``socks5h://...`` (the proxy does; default port 1080).
How the uplink goes through one is :mod:`edged.uplink.proxy`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from edged.secret import Secret

DEFAULT_PORTS = {"http": 8080, "socks5": 1080, "socks5h": 1080}


@dataclass(frozen=True)
class ProxyURL:
    """A parsed proxy URL; ``str()`` redacts the password."""

    scheme: str  # "http", "socks5" or "socks5h"
    host: str
    port: int
    username: str | None = None
    password: Secret | None = None

    def __str__(self) -> str:
        auth = ""
        if self.username is not None:
            auth = self.username + (":********" if self.password is not None else "") + "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{auth}{host}:{self.port}"


def parse_proxy_url(text: str) -> ProxyURL:
    """Parse ``text``; raises ``ValueError`` whose message never contains the password."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
    except ValueError:
        raise ValueError(
            "not a valid proxy URL (expected http://host:port or socks5://host:port)"
        ) from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        shown = f"'{scheme}'" if scheme else "none"
        raise ValueError(
            f"proxy URL scheme {shown} is not supported: use http:// (HTTP CONNECT),"
            " socks5:// or socks5h://"
        )
    if not parts.hostname:
        raise ValueError("the proxy URL has no host name")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("a proxy URL is scheme://[user:password@]host[:port], with no path")
    username = unquote(parts.username) if parts.username is not None else None
    password = Secret(unquote(parts.password)) if parts.password is not None else None
    return ProxyURL(scheme, parts.hostname, port or DEFAULT_PORTS[scheme], username, password)
