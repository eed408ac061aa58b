"""Config of the simulated adapter (the demo and the core tests use it)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from edged.config.types import Duration, StrictModel


class SignalConfig(StrictModel):
    """How one simulated value evolves."""

    kind: Literal["random", "sine", "counter", "constant"] = "random"
    min: float = 0.0
    max: float = 100.0
    period: Duration = 60.0  # for sine
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
    script: list[dict[str, float | int | str | bool]] = Field(default_factory=list)
    count: int | None = Field(default=None, ge=0)  # stop after this many readings
    fail_after: int | None = Field(default=None, ge=1)  # raise a transient error after N readings
    command_delay: Duration = 0.0

    @model_validator(mode="after")
    def _has_source(self) -> DeviceConfig:
        if not self.values and not self.script:
            raise ValueError("give values (generated signals) or script (readings to replay)")
        return self


class Settings(StrictModel):
    """The simulated adapter has no shared settings."""
