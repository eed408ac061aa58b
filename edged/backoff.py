"""Jittered exponential backoff, pure and deterministic given a random source."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays that double from ``initial`` up to ``maximum``, each with up to ±``jitter`` spread.

    Call :meth:`next_delay` after each failure and :meth:`reset` after a success. The jitter keeps
    a fleet of gateways from reconnecting in lockstep after a shared outage.
    """

    initial: float = 1.0
    maximum: float = 120.0
    factor: float = 2.0
    jitter: float = 0.2
    rng: random.Random = field(default_factory=random.Random, repr=False)
    _attempt: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if not 0 < self.initial <= self.maximum:
            raise ValueError("backoff needs 0 < initial <= maximum")
        if self.factor < 1 or not 0 <= self.jitter < 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter < 1")

    @property
    def attempts(self) -> int:
        """Failures since the last reset."""
        return self._attempt

    def next_delay(self) -> float:
        """The delay before the next attempt; grows with each call until :meth:`reset`."""
        base = min(self.maximum, self.initial * self.factor ** min(self._attempt, 64))
        self._attempt += 1
        spread = base * self.jitter
        return min(
            self.maximum,
            max(self.initial * (1 - self.jitter), base + self.rng.uniform(-spread, spread)),
        )

    def reset(self) -> None:
        """Start again from ``initial`` (after a success)."""
        self._attempt = 0
