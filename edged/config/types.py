"""Reusable config field types: a strict model base, durations, identifiers."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict

_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def parse_duration(value: Any) -> float:
    """Seconds from ``5``, ``2.5``, ``"100ms"``, ``"5s"``, ``"2m"``, ``"1h"`` or ``"1d"``."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 5s, 100ms, 2m or a number of seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION_RE.fullmatch(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    else:
        raise ValueError("expected a duration like 5s, 100ms, 2m or a number of seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, written in the config as a number or with a unit (ms, s, m, h, d)."""


def _positive(value: float) -> float:
    if value <= 0:
        raise ValueError("must be greater than zero")
    return value


PositiveDuration = Annotated[float, BeforeValidator(parse_duration), AfterValidator(_positive)]
"""A :data:`Duration` that must be greater than zero."""

_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,36}")
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def _platform_id(value: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise ValueError("must be 1-36 characters of A-Z a-z 0-9 - _ .")
    return value


def _topic_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError("must be 1-128 characters of A-Z a-z 0-9 - _ . (one MQTT topic level)")
    return value


PlatformId = Annotated[str, AfterValidator(_platform_id)]
"""A platform typeId, deviceId or orgId."""

TopicName = Annotated[str, AfterValidator(_topic_name)]
"""An event, command or format name (one topic level)."""
