"""Payload encoding: event and command-result bodies as compact JSON (orjson)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson

from edged.model import CommandResult, JSONValue

MAX_PAYLOAD = 131072
"""The platform's payload limit in bytes; larger messages get the client disconnected."""


_second_cache: list[object] = [None, ""]  # [whole second, "YYYY-MM-DDTHH:MM:SS"]


def iso_time(timestamp: float) -> str:
    """``2026-11-23T12:00:01.234Z`` for an epoch timestamp.

    Formatting a datetime is the costliest step of encoding an event, so the date and time
    down to the second are formatted once per second and only the milliseconds per call.
    """
    fraction, whole = math.modf(timestamp)  # split and round exactly as datetime does
    second, micros = int(whole), round(fraction * 1_000_000)
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    millis = micros // 1000
    if _second_cache[0] != second:
        text = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_cache[0], _second_cache[1] = second, text
    return f"{_second_cache[1]}.{millis:03d}Z"


def encode_event(values: Mapping[str, JSONValue], timestamp: float) -> bytes:
    """An event body: ``{"ts": ISO-8601, "d": {values}}``, in a buffer of its own size."""
    body = orjson.dumps({"ts": iso_time(timestamp), "d": values}, option=orjson.OPT_NON_STR_KEYS)
    # orjson >= 3.11 returns bytes whose allocation stays ~4 KiB however short the JSON: a
    # queued reading would hold 4 KiB for ~60 bytes. Copying costs ~0.1 us and frees that.
    return bytes(memoryview(body))


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
    return bytes(memoryview(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS)))  # as events


def decode_json(payload: bytes) -> Any:
    """Decode a JSON body; raises ``ValueError`` when it is not JSON."""
    return orjson.loads(payload)
