"""Outside-supplied text made safe for logs and reports: escaped, one line, bounded.

Whatever the platform, a device or a config file says is data. Logged raw, a newline in it
forges a log line and a megabyte of it becomes a megabyte of log; kept raw, it holds memory.
"""

from __future__ import annotations

DEFAULT_LIMIT = 200
"""Characters kept of an outside-supplied string in a log line."""

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


def _escape_char(char: str, backslash: bool) -> str:
    if char in _ESCAPES and (backslash or char != "\\"):
        return _ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def safe(value: object, limit: int = DEFAULT_LIMIT, *, backslash: bool = True) -> str:
    """``value`` as one printable line of at most about ``limit`` characters.

    Control and other non-printable characters (newlines, escape sequences, NUL, bidi marks) are
    shown as backslash escapes; longer text is cut and the number of characters left out named.
    Backslashes are escaped too, so an escape sequence cannot be forged, unless ``backslash`` is
    False: then printable text is left alone and escaping twice changes nothing.
    """
    text = value if isinstance(value, str) else str(value)
    cut = len(text) - limit
    if cut > 0:
        text = text[:limit]
    if not text.isprintable() or (backslash and "\\" in text):
        text = "".join(_escape_char(char, backslash) for char in text)
    return f"{text}...(+{cut} chars)" if cut > 0 else text
