"""Counting failures and logging them once per state change, for any adapter.

The first failure of a kind logs a WARNING (or the level given) and later ones DEBUG. A kind
counts as recovered (logged at INFO with how many failed) at the first success after ``quiet``
seconds without a failure of that kind, so a receiver with one bad sentence in ten does not log
twice a minute; ``quiet=0`` recovers at the first success.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

RECOVERY_QUIET = 60.0


class ProblemLog:
    """Per-kind failure counters for one subject (a device, a port, a controller)."""

    def __init__(
        self,
        logger: logging.Logger,
        name: str,
        quiet: float = RECOVERY_QUIET,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.logger = logger
        self.name = name
        self.quiet = quiet
        self.clock = clock
        self.counts: Counter[str] = Counter()
        self.failing: dict[str, list[float]] = {}  # kind -> [failures in this streak, last at]

    def fail(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """Count one failure of ``kind``; log it if ``kind`` was not already failing."""
        self.counts[kind] += 1
        streak = self.failing.get(kind)
        if streak is None:
            self.failing[kind] = [1, self.clock()]
            self.logger.log(level, "%s: %s", self.name, message)
            return
        streak[0] += 1
        streak[1] = self.clock()
        if self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s: %s (%d so far)", self.name, message, int(streak[0]))

    def ok(self, *kinds: str) -> None:
        """Record a success for ``kinds``; logs INFO for each that recovered."""
        now: float | None = None
        for kind in kinds:
            streak = self.failing.get(kind)
            if streak is None:
                continue
            now = self.clock() if now is None else now
            if now - streak[1] >= self.quiet:
                del self.failing[kind]
                self.logger.info(
                    "%s: %s recovered after %d failure(s)", self.name, kind, int(streak[0])
                )

    def streak(self, kind: str) -> int:
        """Failures of ``kind`` in its current streak (0 when it is not failing)."""
        current = self.failing.get(kind)
        return 0 if current is None else int(current[0])
