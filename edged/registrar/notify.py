"""The platform's notify messages, parsed and classified (pure: no state, no logging).

A notify message is outside-supplied JSON (PROTOCOL.md section 3.2). Anything may be wrong with
it: not JSON, not an object, keys missing or of the wrong type, ``RC`` a number or a string,
``Type`` and ``Id`` absent when the topic the gateway used was itself invalid, text of any size.
:func:`parse` turns any bytes into either a :class:`Notify` or a :class:`Malformed`; it never
raises. Text kept for display is escaped and cut (:func:`edged.text.safe`), so a notify cannot
forge a log line or hold much memory.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import orjson

from edged.text import safe

MAX_NOTIFY_BYTES = 64 * 1024
"""Larger payloads are not parsed (a real notify is a few hundred bytes)."""
MAX_ID_CHARS = 128
"""Longer ``Type``/``Id`` values cannot name a device (the platform allows 36): no device key."""
MESSAGE_CHARS = 200
"""Characters of ``Message`` kept for display."""


class Kind(enum.StrEnum):
    """What a notify's ``Message`` says, as far as the registrar is concerned."""

    TOPIC = "topic"
    """Topic does not match any allowed topic rules: a bug or a permission problem."""
    DEVICE_TYPE = "device_type"
    """Device type is not valid: permanent for that device until its config changes."""
    DEVICE_ID = "device_id"
    """Device ID is not valid: permanent for that device until its config changes."""
    LIMIT_GATEWAY = "limit_gateway"
    """Maximum number of devices per gateway is reached: long backoff, new devices wait."""
    LIMIT_ORG = "limit_org"
    """Maximum number of devices per organization is reached: as :attr:`LIMIT_GATEWAY`."""
    INTERNAL = "internal"
    """Failed to create device because of internal errors: retried with backoff."""
    UNKNOWN = "unknown"
    """Any other message: logged once and retried like :attr:`INTERNAL`."""


PERMANENT_KINDS = frozenset({Kind.DEVICE_TYPE, Kind.DEVICE_ID})
LIMIT_KINDS = frozenset({Kind.LIMIT_GATEWAY, Kind.LIMIT_ORG})

# Matched on the normalised text (lower case, single spaces, no trailing full stop), as a
# substring: the documented wording, tolerant of punctuation, case and surrounding text.
_PHRASES: tuple[tuple[str, Kind], ...] = (
    ("does not match any allowed topic rule", Kind.TOPIC),
    ("device type is not valid", Kind.DEVICE_TYPE),
    ("device id is not valid", Kind.DEVICE_ID),
    ("maximum number of devices per gateway", Kind.LIMIT_GATEWAY),
    ("maximum number of devices per organization", Kind.LIMIT_ORG),
    ("maximum number of devices per organisation", Kind.LIMIT_ORG),
    ("failed to create device", Kind.INTERNAL),
)
_SPACES = re.compile(r"\s+")
_CLASSIFY_CHARS = 1000


def classify(message: str) -> Kind:
    """The :class:`Kind` of a notify's ``Message`` text."""
    text = _SPACES.sub(" ", message[:_CLASSIFY_CHARS]).strip().lower()
    for phrase, kind in _PHRASES:
        if phrase in text:
            return kind
    return Kind.UNKNOWN


@dataclass(frozen=True, slots=True)
class Notify:
    """One well-formed notify message. Display fields are already escaped and cut."""

    kind: Kind
    message: str
    """``Message``, escaped and cut (``""`` when absent)."""
    device: str | None
    """``"type/id"`` as sent (raw, for lookups), or None without a usable ``Type`` and ``Id``."""
    where: str
    """The device for display (escaped), or ``"?"``."""
    request: str
    topic: str
    rc: int | str | None
    """``RC`` as a number when it is one (or a string of digits), else escaped text."""


class Malformed(enum.StrEnum):
    """Why a payload is not a usable notify message."""

    TOO_LARGE = "too_large"
    NOT_JSON = "not_json"
    NOT_OBJECT = "not_object"


def _ident(value: object) -> str | None:
    if isinstance(value, bool) or not isinstance(value, str | int):
        return None
    text = str(value)
    return text if 0 < len(text) <= MAX_ID_CHARS else None


def _rc(value: object) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 20:
        return int(value.strip())
    return safe(value, 40)


def _text(value: object, limit: int) -> str:
    if value is None:
        return ""
    return safe(value, limit)


def parse(payload: bytes) -> Notify | Malformed:
    """``payload`` as a :class:`Notify`, or why it is not one. Never raises."""
    if len(payload) > MAX_NOTIFY_BYTES:
        return Malformed.TOO_LARGE
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return Malformed.NOT_JSON
    if not isinstance(body, dict):
        return Malformed.NOT_OBJECT
    raw_message = body.get("Message")
    message = raw_message if isinstance(raw_message, str) else ""
    type_id, device_id = _ident(body.get("Type")), _ident(body.get("Id"))
    device = f"{type_id}/{device_id}" if type_id and device_id else None
    if device is not None:
        where = safe(device, 2 * MAX_ID_CHARS)
    elif "Type" in body or "Id" in body:
        where = f"{_text(body.get('Type', '?'), 40)}/{_text(body.get('Id', '?'), 40)}"
    else:
        where = "?"
    return Notify(
        kind=classify(message),
        message=safe(message, MESSAGE_CHARS) if message else _text(raw_message, MESSAGE_CHARS),
        device=device,
        where=where,
        request=_text(body.get("Request"), 40) or "request",
        topic=_text(body.get("Topic"), 200) or "?",
        rc=_rc(body.get("RC")),
    )
