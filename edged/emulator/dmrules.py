"""The shape the platform requires of device-management messages a gateway sends (PROTOCOL.md §4).

Pure functions, no I/O. :func:`check_body` returns ``(rule, detail)`` pairs; an empty list means
the body is acceptable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

RULE_SHAPE = "dm-shape"
RULE_LIFETIME = "dm-lifetime"

MANAGE = "mgmt/manage"
UNMANAGE = "mgmt/unmanage"
LOCATION = "device/update/location"
ADD_ERROR_CODE = "add/diag/errorCodes"
CLEAR_ERROR_CODES = "clear/diag/errorCodes"
ADD_LOG = "add/diag/log"
CLEAR_LOG = "clear/diag/log"
NOTIFY = "notify"
RESPONSE = "response"

GATEWAY_REQUESTS = frozenset(
    {MANAGE, UNMANAGE, LOCATION, ADD_ERROR_CODE, CLEAR_ERROR_CODES, ADD_LOG, CLEAR_LOG, NOTIFY}
)
"""Requests a gateway sends on ``iotdevice-1/type/T/id/D/<suffix>``; the platform answers each."""

GATEWAY_SUFFIXES = GATEWAY_REQUESTS | {RESPONSE}
"""Every suffix a gateway may publish under ``iotdevice-1/type/T/id/D/``."""

# notify may omit reqId (iot-java sends none); every other request needs one to match the answer.
_NEEDS_REQ_ID = GATEWAY_REQUESTS - {NOTIFY}
_LOG_SEVERITIES = (0, 1, 2)

Problems = list[tuple[str, str]]


def is_int(value: object) -> bool:
    """A JSON integer (``bool`` is not one)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """A finite JSON number (``bool`` is not one)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def check_body(suffix: str, body: Mapping[str, Any], *, min_lifetime: int = 3600) -> Problems:
    """Check a decoded DM message the gateway sent on ``suffix``.

    ``min_lifetime`` is the smallest non-zero manage lifetime accepted (the platform documents
    3600 s); tests of lifetime renewal may lower it.
    """
    problems: Problems = []
    req_id = body.get("reqId")
    if "reqId" in body and (not isinstance(req_id, str) or not req_id):
        problems.append((RULE_SHAPE, f"reqId must be a non-empty string, got {req_id!r}"))
    elif req_id is None and (suffix in _NEEDS_REQ_ID or suffix == RESPONSE):
        problems.append((RULE_SHAPE, "no reqId: the answer could not be matched to the request"))
    d = body.get("d")
    if "d" in body and not isinstance(d, dict):
        problems.append((RULE_SHAPE, f"d must be an object, got {type(d).__name__}"))
        d = None
    checker = _CHECKERS.get(suffix)
    if checker is not None:
        checker(body, d, problems, min_lifetime)
    return problems


def _response(body: Mapping[str, Any], d: Any, problems: Problems, min_lifetime: int) -> None:
    if "rc" not in body:
        problems.append((RULE_SHAPE, "response without rc"))
    elif not is_int(body["rc"]):
        problems.append((RULE_SHAPE, f"rc must be an integer, got {body['rc']!r}"))
    if "message" in body and not isinstance(body["message"], str):
        problems.append((RULE_SHAPE, "message must be a string"))


def _manage(body: Mapping[str, Any], d: Any, problems: Problems, min_lifetime: int) -> None:
    if d is None:
        return
    lifetime = d.get("lifetime")
    if "lifetime" in d:
        if not is_int(lifetime) or lifetime < 0:
            problems.append(
                (RULE_SHAPE, f"lifetime must be a non-negative integer, got {lifetime!r}")
            )
        elif 0 < lifetime < min_lifetime:
            problems.append(
                (RULE_LIFETIME, f"lifetime {lifetime} s is below the minimum {min_lifetime} s")
            )
    supports = d.get("supports")
    if "supports" in d:
        if not isinstance(supports, dict):
            problems.append((RULE_SHAPE, "supports must be an object"))
        else:
            for key, value in supports.items():
                if not isinstance(value, bool):
                    problems.append((RULE_SHAPE, f"supports.{key} must be true or false"))
    for key in ("deviceInfo", "metadata"):
        if key in d and not isinstance(d[key], dict):
            problems.append((RULE_SHAPE, f"{key} must be an object"))


def _location(body: Mapping[str, Any], d: Any, problems: Problems, min_lifetime: int) -> None:
    if d is None:
        problems.append((RULE_SHAPE, "location update without d"))
        return
    for key, bound in (("latitude", 90), ("longitude", 180)):
        value = d.get(key)
        if not is_number(value):
            problems.append((RULE_SHAPE, f"{key} must be a number, got {value!r}"))
        elif not -bound <= value <= bound:
            problems.append((RULE_SHAPE, f"{key} {value} is outside -{bound}..{bound}"))
    for key in ("elevation", "accuracy"):
        if key in d and not is_number(d[key]):
            problems.append((RULE_SHAPE, f"{key} must be a number, got {d[key]!r}"))
    for key in ("measuredDateTime", "updatedDateTime"):
        if key in d and not isinstance(d[key], str):
            problems.append((RULE_SHAPE, f"{key} must be an ISO 8601 string"))


def _error_code(body: Mapping[str, Any], d: Any, problems: Problems, min_lifetime: int) -> None:
    code = d.get("errorCode") if d is not None else None
    if not is_int(code):
        problems.append((RULE_SHAPE, f"d.errorCode must be an integer, got {code!r}"))


def _log(body: Mapping[str, Any], d: Any, problems: Problems, min_lifetime: int) -> None:
    if d is None:
        problems.append((RULE_SHAPE, "log entry without d"))
        return
    if not isinstance(d.get("message"), str):
        problems.append((RULE_SHAPE, "d.message must be a string"))
    if "severity" in d and (not is_int(d["severity"]) or d["severity"] not in _LOG_SEVERITIES):
        problems.append((RULE_SHAPE, f"d.severity must be 0, 1 or 2, got {d['severity']!r}"))
    for key in ("timestamp", "data"):
        if key in d and not isinstance(d[key], str):
            problems.append((RULE_SHAPE, f"d.{key} must be a string"))


def _notify(body: Mapping[str, Any], d: Any, problems: Problems, min_lifetime: int) -> None:
    if d is None:
        problems.append((RULE_SHAPE, "notify without d"))
        return
    if "fields" in d:  # 2018 form: {"fields": [{"field": name, "value": ...}, ...]}
        fields = d["fields"]
        if not isinstance(fields, list) or not fields:
            problems.append((RULE_SHAPE, "d.fields must be a non-empty list"))
            return
        for item in fields:
            if not isinstance(item, dict) or not isinstance(item.get("field"), str):
                problems.append((RULE_SHAPE, f"d.fields entry without a field name: {item!r}"))
            elif "value" not in item:
                problems.append((RULE_SHAPE, f"d.fields entry {item['field']!r} has no value"))
    elif isinstance(d.get("field"), str):  # 2016 form: {"field": name, "value": ...}
        if "value" not in d:
            problems.append((RULE_SHAPE, "notify d.field without d.value"))
    else:
        problems.append((RULE_SHAPE, "notify d needs fields (or field and value)"))


_CHECKERS = {
    RESPONSE: _response,
    MANAGE: _manage,
    LOCATION: _location,
    ADD_ERROR_CODE: _error_code,
    ADD_LOG: _log,
    NOTIFY: _notify,
}
