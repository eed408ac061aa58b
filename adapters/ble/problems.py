"""Log a failure once when it starts, at DEBUG while it lasts, and at INFO when it ends."""

from __future__ import annotations

import logging
from collections import Counter


class Problems:
    """Failure streaks per kind for one subject (a device, a controller), logged on transitions."""

    def __init__(self, logger: logging.Logger, subject: str) -> None:
        self.logger = logger
        self.subject = subject
        self.total: Counter[str] = Counter()
        self.streaks: dict[str, int] = {}

    def fail(self, kind: str, message: str, level: int = logging.WARNING) -> None:
        """Count a failure of ``kind``; only the first of a streak is logged at ``level``."""
        self.total[kind] += 1
        streak = self.streaks.get(kind, 0) + 1
        self.streaks[kind] = streak
        if streak == 1:
            self.logger.log(level, "%s: %s", self.subject, message)
        elif self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug("%s: %s (%d in a row)", self.subject, message, streak)

    def ok(self, kind: str) -> None:
        """End the streak of ``kind``, logging INFO if there was one."""
        streak = self.streaks.pop(kind, 0)
        if streak:
            self.logger.info("%s: %s recovered after %d failure(s)", self.subject, kind, streak)

    def failing(self, kind: str) -> bool:
        """Whether ``kind`` is in a failure streak."""
        return kind in self.streaks
