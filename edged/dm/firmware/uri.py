"""``mgmt.firmware.uri``: parsed, checked against what may be fetched, and shown without secrets.

A URI that is missing or cannot be parsed is a bad request (400) at the download request
(PROTOCOL.md 4.11). A parsable URI with a scheme we do not fetch (``ftp:``, ``file:``, or
``http:`` unless ``allow_http``) is accepted with 202 and ends the download with updateStatus 6
(Invalid URI), as does one that cannot be fetched: :func:`scheme_problem` tells which.

A URI may carry credentials (``https://user:secret@host/...``) or a signed query string; logs
and messages only ever show :func:`redact`'s form: scheme, host, port and path.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from edged.text import safe

MAX_URI = 4096
"""Characters a URI may have."""


@dataclass(frozen=True, slots=True)
class Uri:
    """A parsed firmware URI."""

    scheme: str
    host: str
    port: int | None
    target: str
    """Path and query, as sent in the request line."""
    username: str | None
    password: str | None
    text: str

    def __str__(self) -> str:
        return redact(self.text)


def parse_uri(value: object) -> Uri:
    """The URI in ``value``; raises ValueError (answered 400) when missing or unparsable."""
    if not isinstance(value, str) or not value:
        raise ValueError("mgmt.firmware.uri is missing")
    if len(value) > MAX_URI:
        raise ValueError(f"mgmt.firmware.uri is longer than {MAX_URI} characters")
    if not value.isprintable() or any(c.isspace() for c in value):
        raise ValueError("mgmt.firmware.uri contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError:
        raise ValueError("mgmt.firmware.uri cannot be parsed") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise ValueError("mgmt.firmware.uri has no scheme")
    if scheme in ("http", "https") and not parts.hostname:
        raise ValueError("mgmt.firmware.uri has no host")
    target = parts.path or "/"
    if parts.query:
        target += f"?{parts.query}"
    return Uri(
        scheme,
        parts.hostname or "",
        port,
        target,
        _unquote(parts.username),
        _unquote(parts.password),
        value,
    )


def _unquote(part: str | None) -> str | None:
    return None if part is None else urllib.parse.unquote(part)


def scheme_problem(uri: Uri, *, allow_http: bool) -> str | None:
    """Why ``uri`` is not fetched (updateStatus 6), or None when its scheme is allowed."""
    if uri.scheme == "https" or (uri.scheme == "http" and allow_http):
        return None
    if uri.scheme == "http":
        return "plain http:// is not allowed (firmware.allow_http is false)"
    return f"the scheme {safe(uri.scheme, 32)}: is not supported (https only)"


def redact(text: str) -> str:
    """``text`` without userinfo and with any query or fragment elided, for logs."""
    try:
        parts = urllib.parse.urlsplit(text)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparsable URI)"
    netloc = f"[{host}]" if ":" in host else host
    if port is not None:
        netloc += f":{port}"
    shown = f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else parts.path
    if parts.query or parts.fragment:
        shown += "?..."
    return safe(shown, 200)
