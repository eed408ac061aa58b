"""One attached device's registration state, and how long each kind of refusal holds it.

States (docs/registration.md)::

    unknown --admitted--> pending --probe confirmed--> registered
       |                     |  ^                           |
       +--> waiting ---------+  |                           |
       (FIFO: cap full          |                           |
        or limit backoff)       +-- probe failed to deliver |
                                                            |
    pending / registered --refused--> failed (until t) --t passes--> unknown
                                  \\-> permanent (until the config changes: a restart)

Pure: nothing here reads a clock or touches the loop; times are given by the caller.
"""

from __future__ import annotations

import asyncio
import enum
import random
from dataclasses import dataclass, field
from typing import Protocol

from edged.config.registration import RegistrationConfig
from edged.registrar.notify import LIMIT_KINDS, PERMANENT_KINDS, Kind

JITTER = 0.2
"""Spread of a retry delay: up to ±20 %, so a fleet of gateways does not retry in lockstep."""
LIMIT_JITTER = 0.1
"""Spread of the limit backoff."""


class Cancellable(Protocol):
    """A scheduled callback (``asyncio.TimerHandle`` or a test's stand-in)."""

    def cancel(self) -> None: ...


class State(enum.StrEnum):
    """Where a device is in its registration."""

    UNKNOWN = "unknown"
    """Configured, no message of it seen yet (or its backoff passed): not registered."""
    WAITING = "waiting"
    """Has messages; waits (in order) for a pending slot or for a limit backoff to pass."""
    PENDING = "pending"
    """Admitted: its first message (the probe) may go; the others are held until confirmed."""
    REGISTERED = "registered"
    """Known to the platform: never held."""
    FAILED = "failed"
    """Refused; held until :attr:`Record.until`, then back to unknown."""
    PERMANENT = "permanent"
    """Refused for good (invalid type or id); held until the config changes (a restart)."""


@dataclass(slots=True, eq=False)
class Record:
    """What the registrar knows about one device."""

    key: str
    configured: bool
    state: State = State.UNKNOWN
    probe: asyncio.Future[None] | None = None
    """The future handed back for the probe, while it is in flight or in its confirm window."""
    timer: Cancellable | None = None
    """The one timer of this device: admission lease, confirm window or backoff end."""
    until: float = 0.0
    """Monotonic time a :attr:`State.FAILED` device may go again."""
    attempts: int = 0
    """Retryable refusals since the last registration (the backoff's exponent)."""
    kind: Kind | None = None
    """The last refusal's kind."""
    detail: str = ""
    """The last refusal's message (escaped and cut)."""
    refusals: int = field(default=0)

    def cancel_timer(self) -> None:
        """Cancel this device's timer, if any."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def retry_delay(attempt: int, initial: float, maximum: float, rng: random.Random) -> float:
    """The delay after the ``attempt``-th (from 0) retryable refusal: doubling, jittered."""
    base = min(maximum, initial * 2.0 ** min(attempt, 64))
    delay = base * (1 + rng.uniform(-JITTER, JITTER))
    return min(maximum, max(initial * (1 - JITTER), delay))


def hold_for(
    kind: Kind, attempt: int, settings: RegistrationConfig, rng: random.Random
) -> float | None:
    """How long a device refused with ``kind`` is held: None for good, or seconds.

    ``attempt`` counts the earlier retryable refusals of the device (0 for the first).
    """
    if kind in PERMANENT_KINDS:
        return None
    if kind in LIMIT_KINDS:
        return settings.limit_backoff * (1 + rng.uniform(-LIMIT_JITTER, LIMIT_JITTER))
    return retry_delay(attempt, settings.retry_initial, settings.retry_max, rng)
