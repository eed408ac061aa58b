"""The firmware state machine of one managed device (PROTOCOL.md 4.11), as pure functions.

:class:`Firmware` is the ``mgmt.firmware`` value. Each step returns a new value; :func:`changes`
gives the sub-fields one step changed, which go out together in one notify::

    idle (state 0) --download--> downloading (1) --fetched, verified--> downloaded (2)
        ^                              |                                    |
        |<--- failed: updateStatus 2|3|4|6                                  | update
        |                                                                   v
        |<--- installed: updateStatus 0 ----------------------- installing (2, updateStatus 1)
        |<--- failed: updateStatus 2|5 (image deleted) ----------------------'

A download is refused (400) unless state is 0, an update unless state is 2; while a download
or an install is running every new request, and a platform write of ``mgmt.firmware``, is
refused (:class:`Refused`). ``state`` and ``updateStatus`` are the device's own: a platform
write may only put ``state`` back to 0 (the downloaded image is then dropped) and may reset
``updateStatus`` (not to 1). Changing ``uri`` or ``verifier`` of a downloaded image drops it too.

After a restart (:func:`restarted`) an interrupted download is state 0, updateStatus 3
(Connection Lost); an interrupted install is resolved by the caller, which knows whether the
new version is running.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from edged.dm import codes
from edged.model import JSONValue

IDLE = 0
DOWNLOADING = 1
DOWNLOADED = 2


class Status(enum.IntEnum):
    """``mgmt.firmware.updateStatus``."""

    SUCCESS = 0
    IN_PROGRESS = 1
    OUT_OF_MEMORY = 2
    CONNECTION_LOST = 3
    VERIFICATION_FAILED = 4
    UNSUPPORTED_IMAGE = 5
    INVALID_URI = 6


_TEXT = (("version", "version"), ("name", "name"), ("uri", "uri"), ("verifier", "verifier"))
_UPDATED = "updatedDateTime"
MAX_TEXT = 4096


class Refused(Exception):
    """A firmware request or write that is not carried out; ``rc`` is the answer."""

    def __init__(self, rc: int, message: str) -> None:
        super().__init__(message)
        self.rc = rc
        self.message = message


@dataclass(frozen=True, slots=True)
class Firmware:
    """One device's ``mgmt.firmware``."""

    version: str = ""
    name: str = ""
    uri: str = ""
    verifier: str = ""
    state: int = IDLE
    update_status: int = Status.SUCCESS
    updated: str = ""
    """``updatedDateTime``: when the last install succeeded (ISO 8601), or the platform's."""

    @property
    def busy(self) -> bool:
        """A download or an install is in progress."""
        return self.state == DOWNLOADING or self.update_status == Status.IN_PROGRESS

    def value(self) -> dict[str, JSONValue]:
        """The wire form (all sub-fields)."""
        return {
            "version": self.version,
            "name": self.name,
            "uri": self.uri,
            "verifier": self.verifier,
            "state": self.state,
            "updateStatus": self.update_status,
            _UPDATED: self.updated,
        }

    @classmethod
    def from_value(cls, value: object) -> Firmware:
        """Read a stored value; anything malformed becomes the default (never fatal)."""
        if not isinstance(value, dict):
            return cls()
        texts = {attr: value.get(key) for attr, key in _TEXT}
        state, status = value.get("state"), value.get("updateStatus")
        updated = value.get(_UPDATED)
        return cls(
            **{attr: v for attr, v in texts.items() if isinstance(v, str)},
            state=state if state in (IDLE, DOWNLOADING, DOWNLOADED) else IDLE,
            update_status=Status(status) if isinstance(status, int) and _is_status(status) else 0,
            updated=updated if isinstance(updated, str) else "",
        )


def _is_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6


def changes(old: Firmware, new: Firmware) -> dict[str, JSONValue]:
    """The sub-fields that differ, in wire form (one notify carries them all)."""
    before = old.value()
    return {k: v for k, v in new.value().items() if before[k] != v}


def platform_write(current: Firmware, value: object) -> Firmware:
    """Apply the platform's ``device/update`` of ``mgmt.firmware`` (400/409 as :class:`Refused`)."""
    if not isinstance(value, dict):
        raise Refused(codes.BAD_REQUEST, "the value of mgmt.firmware must be a JSON object")
    if current.busy:
        raise Refused(codes.CONFLICT, "a firmware download or update is in progress")
    new: dict[str, Any] = {}
    for attr, key in (*_TEXT, ("updated", _UPDATED)):
        if key in value:
            text = value[key]
            if not isinstance(text, str) or len(text) > MAX_TEXT:
                raise Refused(
                    codes.BAD_REQUEST, f"mgmt.firmware.{key} must be a string (<= {MAX_TEXT})"
                )
            new[attr] = text
    state = value.get("state", current.state)
    if state not in (current.state, IDLE) or isinstance(state, bool):
        raise Refused(codes.BAD_REQUEST, "mgmt.firmware.state can only be set back to 0")
    status = value.get("updateStatus", current.update_status)
    if not _is_status(status) or status == Status.IN_PROGRESS:
        raise Refused(codes.BAD_REQUEST, "mgmt.firmware.updateStatus must be 0 or 2-6")
    new_state = IDLE if state == IDLE else current.state
    written = replace(current, **new, state=new_state, update_status=Status(status))
    if written.uri != current.uri or written.verifier != current.verifier:
        written = replace(written, state=IDLE)  # a downloaded image of another URI is stale
    return written


def start_download(current: Firmware) -> Firmware:
    """Downloading (state 1); refused unless idle (the caller checks URI and verifier)."""
    _not_busy(current)
    if current.state != IDLE:
        raise Refused(codes.BAD_REQUEST, f"firmware state is {current.state}, not 0 (idle)")
    return replace(current, state=DOWNLOADING, update_status=Status.SUCCESS)


def downloaded(current: Firmware) -> Firmware:
    """The image is on disk and verified (state 2)."""
    return replace(current, state=DOWNLOADED)


def download_failed(current: Firmware, status: Status) -> Firmware:
    """Back to idle with why (2, 3, 4 or 6)."""
    return replace(current, state=IDLE, update_status=status)


def start_install(current: Firmware) -> Firmware:
    """Installing (updateStatus 1); refused unless downloaded."""
    _not_busy(current)
    if current.state != DOWNLOADED:
        raise Refused(codes.BAD_REQUEST, f"firmware state is {current.state}, not 2 (downloaded)")
    return replace(current, update_status=Status.IN_PROGRESS)


def installed(current: Firmware, when: str) -> Firmware:
    """Success: idle, updateStatus 0, ``updatedDateTime`` = ``when``."""
    return replace(current, state=IDLE, update_status=Status.SUCCESS, updated=when)


def install_failed(current: Firmware, status: Status) -> Firmware:
    """The install failed (2 or 5); the image is dropped, so back to idle."""
    return replace(current, state=IDLE, update_status=status)


def restarted(current: Firmware) -> Firmware:
    """The value after a restart: an interrupted download ended with Connection Lost."""
    if current.state == DOWNLOADING:
        return download_failed(current, Status.CONNECTION_LOST)
    return current


def _not_busy(current: Firmware) -> None:
    if current.busy:
        raise Refused(codes.BAD_REQUEST, "a firmware download or update is already in progress")
