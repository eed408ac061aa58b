"""Config of the simulated adapter (the demo and the core tests use it)."""

from __future__ import annotations

import math
from typing import Annotated, Literal

from pydantic import Field, PlainValidator, model_validator

from edged.config.types import (
    INT64_MAX,
    Count,
    Duration,
    FiniteFloat,
    PositiveDuration,
    StrictModel,
)


def _script_value(value: object) -> float | int | str | bool:
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not -INT64_MAX - 1 <= value <= INT64_MAX:
            raise ValueError("an integer must fit in 64 bits")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value
    raise ValueError("must be a number, a string or a boolean")


ScriptValue = Annotated[float | int | str | bool, PlainValidator(_script_value)]
"""One value of a scripted reading, as it will appear in the event's JSON."""


class SignalConfig(StrictModel):
    """How one simulated value evolves."""

    kind: Literal["random", "sine", "counter", "constant"] = "random"
    min: FiniteFloat = 0.0
    max: FiniteFloat = 100.0
    period: PositiveDuration = 60.0  # for sine
    decimals: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _range(self) -> SignalConfig:
        if self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class DeviceConfig(StrictModel):
    """The ``simulated:`` section of a device."""

    interval: Duration = 1.0
    values: dict[str, SignalConfig] = Field(default_factory=dict)
    script: list[dict[str, ScriptValue]] = Field(default_factory=list)
    count: Count | None = None  # stop after this many readings
    fail_after: Count | None = Field(default=None, ge=1)  # a transient error after N readings
    command_delay: Duration = 0.0

    @model_validator(mode="after")
    def _has_source(self) -> DeviceConfig:
        if not self.values and not self.script:
            raise ValueError("give values (generated signals) or script (readings to replay)")
        return self


class Settings(StrictModel):
    """The simulated adapter has no shared settings."""
