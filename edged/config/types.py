"""Reusable config field types: a strict model base, bounded durations and numbers, identifiers.

Every number a config accepts is finite and inside a range the daemon can act on: ``.nan``,
``.inf`` or ``1e300`` seconds are refused here, once, for every adapter, instead of failing at
run time (a timer that never fires, a status event every nanosecond, an overflow in a library).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field

_DURATION_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
MIN_DURATION = 0.001
"""The shortest positive duration (1 ms): anything shorter is a busy loop, not a period."""
MAX_DURATION = 365 * DAY
"""The longest duration any option takes unless it says otherwise."""
MAX_MAGNITUDE = 1e15
"""Bound of a :data:`FiniteFloat`: exactly representable integers, far beyond any reading."""


class StrictModel(BaseModel):
    """Base of every config model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


def parse_duration(value: Any) -> float:
    """Seconds from ``5``, ``2.5``, ``"100ms"``, ``"5s"``, ``"2m"``, ``"1h"`` or ``"1d"``.

    Raises :class:`ValueError` for anything else, including negative, infinite, NaN and
    overflowing values.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration like 5s, 100ms, 2m or a number of seconds")
    try:
        if isinstance(value, int | float):
            seconds = float(value)
        elif isinstance(value, str) and (match := _DURATION_RE.fullmatch(value)):
            seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        else:
            raise ValueError("expected a duration like 5s, 100ms, 2m or a number of seconds")
    except OverflowError:
        raise ValueError("the duration is far too long") from None
    if math.isnan(seconds):
        raise ValueError("a duration must be a number, not .nan")
    if math.isinf(seconds):
        raise ValueError("a duration must be finite, not .inf")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def format_duration(seconds: float) -> str:
    """``0.001`` -> ``1ms``, ``90`` -> ``90s``, ``3600`` -> ``1h``: for messages."""
    for unit, size in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", 1.0)):
        if seconds >= size and (seconds / size).is_integer():
            return f"{seconds / size:g}{unit}"
    if seconds < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


def duration_range(low: float = 0.0, high: float = MAX_DURATION) -> BeforeValidator:
    """A validator that parses a duration and requires ``low <= seconds <= high``.

    Use as ``Annotated[float, duration_range(1, DAY)]`` for an option with its own range.
    """
    span = (
        f"between {format_duration(low)} and {format_duration(high)}"
        if low
        else (f"at most {format_duration(high)}")
    )

    def check(value: Any) -> float:
        seconds = parse_duration(value)
        if not low <= seconds <= high:
            raise ValueError(f"must be {span} (got {format_duration(seconds)})")
        return seconds

    return BeforeValidator(check)


Duration = Annotated[float, duration_range(0.0, MAX_DURATION)]
"""Seconds, written as a number or with a unit (ms, s, m, h, d); 0 up to 365 days."""

PositiveDuration = Annotated[float, duration_range(MIN_DURATION, MAX_DURATION)]
"""A :data:`Duration` of at least 1 ms."""


def _finite(value: float) -> float:
    if not -MAX_MAGNITUDE <= value <= MAX_MAGNITUDE:
        raise ValueError(f"must be between -{MAX_MAGNITUDE:g} and {MAX_MAGNITUDE:g}")
    return value


FiniteFloat = Annotated[float, Field(allow_inf_nan=False), AfterValidator(_finite)]
"""A float that is neither NaN nor infinite, within +-1e15."""

INT64_MAX = 2**63 - 1

Int64 = Annotated[int, Field(ge=-(2**63), le=INT64_MAX)]
"""An integer that fits a signed 64-bit field (what JSON encoders and libraries accept)."""

Count = Annotated[int, Field(ge=0, le=INT64_MAX)]
"""A non-negative count that fits 64 bits."""

_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,36}")
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_HOST_RE = re.compile(r"[A-Za-z0-9_.\-:\[\]%]{1,253}")
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def _matching(pattern: re.Pattern[str], message: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise ValueError(message)
        return value

    return check


PlatformId = Annotated[
    str, AfterValidator(_matching(_ID_RE, "must be 1-36 characters of A-Z a-z 0-9 - _ ."))
]
"""A platform typeId, deviceId or orgId."""

TopicName = Annotated[
    str,
    AfterValidator(
        _matching(_NAME_RE, "must be 1-128 characters of A-Z a-z 0-9 - _ . (one MQTT topic level)")
    ),
]
"""An event, command or format name (one topic level)."""

HostName = Annotated[
    str,
    AfterValidator(
        _matching(_HOST_RE, "must be a host name or IP address (1-253 characters, no spaces)")
    ),
]
"""A DNS name or an IP address literal, as given to the resolver."""

EnvName = Annotated[
    str,
    AfterValidator(_matching(_ENV_RE, "must be an environment variable name (A-Z a-z 0-9 _)")),
]
"""The name of an environment variable."""
