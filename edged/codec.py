"""Payload encoding: event and command-result bodies as compact JSON (orjson)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from edged.model import CommandResult, JSONValue

MAX_PAYLOAD = 131072
"""The platform's payload limit in bytes; larger messages get the client disconnected."""


def iso_time(timestamp: float) -> str:
    """``2026-11-23T12:00:01.234Z`` for an epoch timestamp."""
    text = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    return text[:-6] + "Z"  # "+00:00" -> "Z"


def encode_event(values: Mapping[str, JSONValue], timestamp: float) -> bytes:
    """An event body: ``{"ts": ISO-8601, "d": {values}}``."""
    return orjson.dumps({"ts": iso_time(timestamp), "d": values}, option=orjson.OPT_NON_STR_KEYS)


def encode_command_result(result: CommandResult, timestamp: float) -> bytes:
    """A ``cmdResult`` body: command name, reqId, status, error text and result data."""
    body: dict[str, Any] = {
        "command": result.command.name,
        "reqId": result.command.correlation_id,
        "status": result.status.value,
        "error": result.error,
        "d": dict(result.data),
        "ts": iso_time(timestamp),
    }
    return orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)


def decode_json(payload: bytes) -> Any:
    """Decode a JSON body; raises ``ValueError`` when it is not JSON."""
    return orjson.loads(payload)
