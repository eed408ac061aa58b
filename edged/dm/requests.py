"""Platform-to-gateway device-management messages, parsed and checked before anything acts.

:func:`parse` turns the suffix and body of one ``iotdm-1`` message into a typed request (or the
platform's ``response`` to one of ours), or into a :class:`Problem`: the answer the request gets
instead (400 for a bad body, 404 for an unknown suffix). A problem
without a reqId cannot be answered and is a logged drop. Nothing here acts or logs.

Both payload forms of observe and cancel are accepted (PROTOCOL.md 4.9 and 7.3): ``fields`` as
names or as ``{"field": name}`` objects, and cancel's older ``data`` key.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edged import codec
from edged.dm import codes
from edged.model import JSONValue

MAX_REQ_ID = 256
"""Characters a reqId may have; a longer one could not be echoed in an answer."""
MAX_BODY = codec.MAX_PAYLOAD
"""Bodies larger than the platform's own payload limit are refused (400)."""
MAX_DECODED_BODY = 4 * MAX_BODY
"""Beyond this a body is not even decoded to find its reqId: a logged drop."""
MAX_FIELDS = 64
"""Fields in one update, observe, cancel or custom action."""
MAX_FIELD_NAME = 255

WRITABLE = ("location", "metadata", "deviceInfo", "mgmt.firmware")
"""The attributes ``device/update`` may change (PROTOCOL.md 4.8)."""


class Action(enum.StrEnum):
    """The two device actions of PROTOCOL.md 4.10."""

    REBOOT = "reboot"
    FACTORY_RESET = "factory_reset"


_ACTIONS = frozenset(a.value for a in Action)
_STEPS = frozenset(("download", "update"))
"""``mgmt/initiate/firmware/<step>`` (PROTOCOL.md 4.11)."""


@dataclass(frozen=True, slots=True)
class Update:
    """``device/update``: new values for attributes, in the order given."""

    req_id: str | None
    fields: tuple[tuple[str, JSONValue], ...]


@dataclass(frozen=True, slots=True)
class Observe:
    """``observe``: start notifying changes of these fields."""

    req_id: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Cancel:
    """``cancel``: stop notifying changes of these fields."""

    req_id: str
    names: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DeviceAction:
    """``mgmt/initiate/device/reboot`` or ``.../factory_reset``."""

    req_id: str
    action: Action


@dataclass(frozen=True, slots=True)
class FirmwareAction:
    """``mgmt/initiate/firmware/download`` or ``.../update``."""

    req_id: str
    step: str


@dataclass(frozen=True, slots=True)
class Custom:
    """``mgmt/custom/<bundle>/<action>`` with its parameters (values as strings)."""

    req_id: str
    bundle: str
    action: str
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class PlatformResponse:
    """The platform's ``response`` to a request of ours (manage, location, diag, notify)."""

    req_id: str
    rc: int
    message: str | None


@dataclass(frozen=True, slots=True)
class Problem:
    """The answer a request gets instead of being carried out; no reqId: nobody to answer."""

    req_id: str | None
    rc: int
    message: str
    fields: tuple[str, ...] = ()


Request = Update | Observe | Cancel | DeviceAction | FirmwareAction | Custom
Parsed = Request | PlatformResponse | Problem


class _Bad(Exception):
    """A body that does not have the shape its suffix needs."""

    def __init__(self, message: str, rc: int = codes.BAD_REQUEST) -> None:
        super().__init__(message)
        self.rc = rc


def parse(suffix: str, payload: bytes) -> Parsed:
    """The request, the platform's response, or the problem answered instead."""
    req_id: str | None = None
    try:
        body, req_id = _envelope(payload)
        if len(payload) > MAX_BODY:
            raise _Bad(f"the body exceeds {MAX_BODY} bytes")
        return _parse_body(suffix, req_id, body)
    except _Bad as exc:
        return Problem(req_id, exc.rc, str(exc))


def _envelope(payload: bytes) -> tuple[dict[str, Any], str | None]:
    """The decoded body and its reqId; a problem here has no reqId to answer."""
    if len(payload) > MAX_DECODED_BODY:
        raise _Bad(f"the body has {len(payload)} bytes")
    try:
        body = codec.decode_json(payload)
    except ValueError:
        raise _Bad("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise _Bad("the body is not a JSON object")
    req_id = body.get("reqId")
    if req_id is not None and not isinstance(req_id, str):
        raise _Bad("the reqId is not a string")
    if isinstance(req_id, str) and not 0 < len(req_id) <= MAX_REQ_ID:
        raise _Bad(f"the reqId must have 1-{MAX_REQ_ID} characters")
    return body, req_id


def _parse_body(suffix: str, req_id: str | None, body: dict[str, Any]) -> Parsed:
    data = body.get("d")
    if data is not None and not isinstance(data, dict):
        raise _Bad("d must be a JSON object")
    if suffix == "response":
        return _parse_response(req_id, body)
    if suffix == "device/update":
        return Update(req_id, _update_fields(data))
    levels = suffix.split("/")
    if req_id is None:
        raise _Bad("a reqId is required")
    if suffix in ("observe", "cancel"):
        names = _names(data, ("fields",) if suffix == "observe" else ("fields", "data"))
        return (Observe if suffix == "observe" else Cancel)(req_id, names)
    if len(levels) == 4 and levels[:3] == ["mgmt", "initiate", "device"] and levels[3] in _ACTIONS:
        return DeviceAction(req_id, Action(levels[3]))
    if len(levels) == 4 and levels[:3] == ["mgmt", "initiate", "firmware"] and levels[3] in _STEPS:
        return FirmwareAction(req_id, levels[3])
    if len(levels) == 4 and levels[:2] == ["mgmt", "custom"]:
        return Custom(req_id, levels[2], levels[3], _params(data))
    raise _Bad(f"unknown request {suffix}", codes.NOT_FOUND)


def _parse_response(req_id: str | None, body: dict[str, Any]) -> Parsed:
    rc, message = body.get("rc"), body.get("message")
    if req_id is None or not isinstance(rc, int) or isinstance(rc, bool):
        return Problem(None, codes.BAD_REQUEST, "a response needs a reqId and an integer rc")
    return PlatformResponse(req_id, rc, message if isinstance(message, str) else None)


def _field_list(data: dict[str, Any] | None, keys: tuple[str, ...]) -> list[Any]:
    for key in keys:
        items = None if data is None else data.get(key)
        if items is None:
            continue
        if not isinstance(items, list) or not items:
            raise _Bad(f"d.{key} must be a non-empty list")
        if len(items) > MAX_FIELDS:
            raise _Bad(f"d.{key} has {len(items)} entries; at most {MAX_FIELDS}")
        return items
    raise _Bad(f"d.{keys[0]} is missing")


def _name(value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= MAX_FIELD_NAME:
        raise _Bad(f"a field name must be a string of 1-{MAX_FIELD_NAME} characters")
    return value


def _names(data: dict[str, Any] | None, keys: tuple[str, ...]) -> tuple[str, ...]:
    names: list[str] = []
    for item in _field_list(data, keys):
        raw = item.get("field") if isinstance(item, dict) else item
        name = _name(raw)
        if name not in names:
            names.append(name)
    return tuple(names)


def _update_fields(data: dict[str, Any] | None) -> tuple[tuple[str, JSONValue], ...]:
    fields: list[tuple[str, JSONValue]] = []
    for item in _field_list(data, ("fields",)):
        if not isinstance(item, dict) or "value" not in item:
            raise _Bad('each entry of d.fields must be {"field": name, "value": value}')
        name = _name(item.get("field"))
        value = item["value"]
        if name in WRITABLE:
            _check_value(name, value)
        fields.append((name, value))
    return tuple(fields)


def _check_value(name: str, value: object) -> None:
    if not isinstance(value, dict):
        raise _Bad(f"the value of {name} must be a JSON object")
    if name == "location":
        for key in ("latitude", "longitude"):
            if not _is_number(value.get(key)):
                raise _Bad(f"location.{key} must be a number")
        if not (-90 <= value["latitude"] <= 90 and -180 <= value["longitude"] <= 180):
            raise _Bad("location is outside -90..90 latitude, -180..180 longitude")
        for key in ("elevation", "accuracy"):
            if key in value and not _is_number(value[key]):
                raise _Bad(f"location.{key} must be a number")
    elif name == "deviceInfo":
        for key, item in value.items():
            if not isinstance(item, str):
                raise _Bad(f"deviceInfo.{_clip(key)} must be a string")


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _params(data: dict[str, Any] | None) -> dict[str, str]:
    if data is None or data.get("fields") is None:
        return {}
    params: dict[str, str] = {}
    for item in _field_list(data, ("fields",)):
        if not isinstance(item, dict):
            raise _Bad('each parameter must be {"field": name, "value": value}')
        name = _name(item.get("field"))
        value = item.get("value")
        if name in params:
            raise _Bad(f"parameter {_clip(name)} is given twice")
        if isinstance(value, bool):
            params[name] = "true" if value else "false"
        elif isinstance(value, str) or _is_number(value):
            params[name] = str(value)
        else:
            raise _Bad(f"parameter {_clip(name)} must be a string or a number")
    return params


def _clip(text: str) -> str:
    return text if len(text) <= 64 else f"{text[:64]}..."
