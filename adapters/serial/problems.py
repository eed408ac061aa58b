"""Counting bad input and logging it once per state change.

The first failure of a kind logs a WARNING, later ones of the same kind log at DEBUG, and the
first success after failures logs INFO with how many failed in between.
"""

from __future__ import annotations

import logging
from collections import Counter


class ProblemLog:
    """Per-kind failure counters for one device, with transition-only logging."""

    def __init__(self, logger: logging.Logger, name: str) -> None:
        self.logger = logger
        self.name = name
        self.counts: Counter[str] = Counter()
        self.failing: dict[str, int] = {}  # kind -> failures since it started failing

    def fail(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """Count one failure of ``kind``; log it if ``kind`` was not already failing."""
        self.counts[kind] += 1
        streak = self.failing.get(kind)
        if streak is None:
            self.failing[kind] = 1
            self.logger.log(level, "%s: %s", self.name, message)
        else:
            self.failing[kind] = streak + 1
            if self.logger.isEnabledFor(logging.DEBUG):
                self.logger.debug("%s: %s (still failing: %d)", self.name, message, streak + 1)

    def ok(self, *kinds: str) -> None:
        """Record a success for ``kinds``; logs INFO for each that was failing."""
        for kind in kinds:
            streak = self.failing.pop(kind, None)
            if streak is not None:
                self.logger.info("%s: %s recovered after %d failure(s)", self.name, kind, streak)
