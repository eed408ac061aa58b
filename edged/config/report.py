"""Config problems as single lines: ``FILE:LINE: key.path: message``, escaped and bounded.

Keys, values and file names come from the operator's file and may hold newlines, terminal
escapes or megabytes of text; a problem report must still be one readable line each, so every
part is escaped (non-printable characters as ``\\n``, ``\\x1b``, ...) and cut to a length.
Escaping leaves printable text alone, so applying it twice changes nothing.
"""

from __future__ import annotations

from edged.adapters.base import Loc
from edged.text import safe

PATH_LIMIT = 256
KEY_LIMIT = 64
WHERE_LIMIT = 200
MESSAGE_LIMIT = 300


def one_line(text: str, limit: int) -> str:
    """``text`` with non-printable characters escaped, cut to about ``limit`` characters."""
    return safe(text, limit, backslash=False)


def format_loc(loc: Loc) -> str:
    """``("devices", 2, "modbus", "unit")`` -> ``devices[2].modbus.unit`` (keys escaped)."""
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
            continue
        key = one_line(part, KEY_LIMIT) if part else '""'
        text += f".{key}" if text else key
    return text


def format_problem(path: str, line: int, where: str, message: str) -> str:
    """One problem line; ``where`` is a formatted key path (empty for the whole document)."""
    return (
        f"{one_line(path, PATH_LIMIT) or '<config>'}:{line}: "
        f"{one_line(where, WHERE_LIMIT) or '(top level)'}: "
        f"{one_line(message, MESSAGE_LIMIT) or 'invalid'}"
    )
