"""The ``registration:`` section: how attached devices are registered with the platform.

The platform registers an attached device the first time the gateway publishes for it and keeps
at most 128 such registrations pending per gateway (PROTOCOL.md section 3); the registrar
(:mod:`edged.registrar`) follows these settings. See docs/registration.md.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from edged.config.types import DAY, HOUR, StrictModel, duration_range

PLATFORM_MAX_PENDING = 128
"""The platform's own cap on registrations pending per gateway."""


class RegistrationConfig(StrictModel):
    """Registration of attached devices (the registrar's rules)."""

    # Devices whose registration may be pending at once; the others wait in order.
    max_pending: int = Field(default=PLATFORM_MAX_PENDING, ge=1, le=PLATFORM_MAX_PENDING)
    # A pending device counts as registered once a message for it was acknowledged and this
    # long passed with no notify about it.
    confirm_after: Annotated[float, duration_range(0.01, HOUR)] = 10.0
    # Backoff after a retryable failure (internal error, unknown message): jittered, doubling.
    retry_initial: Annotated[float, duration_range(0.01, DAY)] = 60.0
    retry_max: Annotated[float, duration_range(0.01, 7 * DAY)] = HOUR
    # After "maximum number of devices ... reached": new devices wait this long.
    limit_backoff: Annotated[float, duration_range(0.01, 7 * DAY)] = HOUR
    # Default: registered.json next to the outbox's database.
    path: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> RegistrationConfig:
        if self.retry_initial > self.retry_max:
            raise ValueError("retry_initial must not exceed retry_max")
        return self
