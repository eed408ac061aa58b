"""The device-management return codes (PROTOCOL.md 4.4), by name."""

from __future__ import annotations

OK = 200
ACCEPTED = 202
"""An action (reboot, factory reset) was started."""
CHANGED = 204
"""Attributes were updated (``device/update``)."""
BAD_REQUEST = 400
FORBIDDEN = 403
NOT_FOUND = 404
CONFLICT = 409
"""Busy (too many requests at once); the platform may retry later."""
INTERNAL_ERROR = 500
NOT_IMPLEMENTED = 501

_NAMES = {
    OK: "ok",
    ACCEPTED: "accepted",
    CHANGED: "changed",
    BAD_REQUEST: "bad request",
    FORBIDDEN: "forbidden",
    NOT_FOUND: "not found",
    CONFLICT: "conflict",
    INTERNAL_ERROR: "internal error",
    NOT_IMPLEMENTED: "not implemented",
}


def describe(rc: object) -> str:
    """``"404 (not found)"``; codes outside the protocol's list are shown as they came."""
    name = _NAMES.get(rc) if isinstance(rc, int) and not isinstance(rc, bool) else None
    return f"{rc} ({name})" if name else repr(rc)[:40]
