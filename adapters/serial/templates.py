"""Command templates: text or hex with ``{name}`` placeholders filled from a command's payload.

Pure code. Values must be numbers, booleans or strings; strings may not contain control
characters, so a payload cannot smuggle a line ending and a second command onto the wire.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from edged.adapters.serial.config import placeholders
from edged.errors import CommandRejected
from edged.model import JSONValue


class Template:
    """A validated template; :meth:`render` returns the bytes to write."""

    def __init__(self, text: str, *, hex_bytes: bool, encoding: str) -> None:
        self.text = text
        self.hex_bytes = hex_bytes
        self.encoding = encoding
        self.names = tuple(dict.fromkeys(placeholders(text)))
        self._formatter = string.Formatter()

    def render(self, payload: JSONValue) -> bytes:
        """The bytes for ``payload`` (the command's decoded JSON); raises CommandRejected."""
        values: Mapping[str, Any] = {}
        if self.names:
            if not isinstance(payload, dict):
                raise CommandRejected(
                    f"this command needs a JSON object with {', '.join(self.names)}"
                )
            missing = [name for name in self.names if name not in payload]
            if missing:
                raise CommandRejected(f"missing value(s): {', '.join(missing)}")
            values = {name: _check_value(name, payload[name]) for name in self.names}
        try:
            text = self._formatter.vformat(self.text, (), values)
        except (ValueError, TypeError) as exc:
            raise CommandRejected(f"cannot format the command: {exc}") from None
        if self.hex_bytes:
            try:
                return bytes.fromhex(text)
            except ValueError:
                raise CommandRejected(f"the filled template {text!r} is not hex bytes") from None
        try:
            return text.encode(self.encoding)
        except UnicodeEncodeError:
            raise CommandRejected(
                f"the command text cannot be encoded as {self.encoding}"
            ) from None


def _check_value(name: str, value: JSONValue) -> JSONValue:
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        if any(ord(char) < 32 or ord(char) == 127 for char in value):
            raise CommandRejected(f"value of {name} contains control characters")
        return value
    raise CommandRejected(f"value of {name} must be a number, string or boolean")
