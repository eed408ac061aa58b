"""The shared config types: durations and numbers are finite and in range; reports are one line."""

from __future__ import annotations

import math
from typing import Annotated

import pytest
from pydantic import ValidationError

from edged.config.report import format_loc, format_problem, one_line
from edged.config.types import (
    DAY,
    Count,
    Duration,
    FiniteFloat,
    HostName,
    PositiveDuration,
    StrictModel,
    duration_range,
    format_duration,
    parse_duration,
)


class _Model(StrictModel):
    duration: Duration = 0.0
    positive: PositiveDuration = 1.0
    status: Annotated[float, duration_range(1.0, DAY)] = 60.0
    number: FiniteFloat = 0.0
    count: Count = 0
    host: HostName = "localhost"


def _error(**values: object) -> str:
    with pytest.raises(ValidationError) as info:
        _Model.model_validate(values)
    (error,) = info.value.errors()
    return str(error["msg"])


@pytest.mark.parametrize(
    ("text", "seconds"),
    [(5, 5.0), (2.5, 2.5), ("100ms", 0.1), ("5s", 5.0), ("2m", 120.0), ("1h", 3600.0), ("1d", DAY)],
)
def test_durations_parse(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (math.nan, "not .nan"),
        (math.inf, "finite, not .inf"),
        (-math.inf, "finite, not .inf"),
        (10**4000, "far too long"),  # float() of it overflows
        (-1, "cannot be negative"),
        (True, "expected a duration"),
        ("soon", "expected a duration"),
        ([1], "expected a duration"),
    ],
)
def test_non_durations_are_refused_with_a_reason(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_duration(value)
    assert message in _error(duration=value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("duration", 366 * DAY, "must be at most 365d (got 366d)"),
        ("duration", 1e300, "must be at most 365d"),
        ("positive", 0, "must be between 1ms and 365d (got 0ms)"),
        ("positive", 0.0001, "must be between 1ms and 365d"),
        ("status", 1e-9, "must be between 1s and 1d"),
        ("status", "2d", "must be between 1s and 1d (got 2d)"),
    ],
)
def test_durations_have_a_range(field: str, value: object, message: str) -> None:
    assert _error(**{field: value}).startswith(f"Value error, {message}")


def test_range_ends_are_accepted() -> None:
    model = _Model.model_validate(
        {"duration": "365d", "positive": "1ms", "status": "1s", "number": -1e15, "count": 2**63 - 1}
    )
    assert (model.duration, model.positive, model.status) == (365 * DAY, 0.001, 1.0)
    assert _Model.model_validate({"status": "1d", "number": 1e15}).status == DAY


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e16, 10**400])
def test_finite_float_refuses_nan_inf_and_huge(value: float) -> None:
    _error(number=value)


@pytest.mark.parametrize("value", [-1, 2**63, 10**4000])
def test_count_is_non_negative_and_fits_64_bits(value: int) -> None:
    _error(count=value)


@pytest.mark.parametrize("host", ["a b", "bad\nhost", "x" * 254, "", "host/path"])
def test_host_names_are_refused(host: str) -> None:
    _error(host=host)


@pytest.mark.parametrize("host", ["broker.example.com", "127.0.0.1", "::1", "[fe80::1%eth0]"])
def test_host_names_and_addresses_are_accepted(host: str) -> None:
    assert _Model.model_validate({"host": host}).host == host


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.001, "1ms"), (0.25, "250ms"), (1.5, "1.5s"), (90, "90s"), (120, "2m"), (7200, "2h")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_one_line_escapes_and_bounds() -> None:
    assert one_line("a\nb\r\tc\x1b[31m\u2028\x00", 100) == "a\\nb\\r\\tc\\x1b[31m\\u2028\\x00"
    assert one_line("x" * 50, 10) == "xxxxxxxxxx...(+40 chars)"
    escaped = one_line("k\ney\x85", 100)
    assert one_line(escaped, 100) == escaped  # escaping twice changes nothing
    assert one_line("température ✓", 100) == "température ✓"


def test_format_loc_escapes_each_key() -> None:
    assert format_loc(("devices", 2, "modbus", "unit")) == "devices[2].modbus.unit"
    assert format_loc(("a\nb", "", 0)) == 'a\\nb.""[0]'
    assert len(format_loc(("k" * 10_000,))) < 100


def test_format_problem_is_one_line_whatever_its_parts() -> None:
    line = format_problem("dir\n/edged.yaml", 7, "a\nb", "bad\nvalue " + "z" * 10_000)
    assert "\n" not in line
    assert line.startswith("dir\\n/edged.yaml:7: a\\nb: bad\\nvalue zzz")
    assert len(line) < 500
    assert format_problem("", 1, "", "") == "<config>:1: (top level): invalid"
