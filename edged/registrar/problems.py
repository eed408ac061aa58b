"""Notify messages counted per source, and problems logged once, in bounded memory.

:meth:`NotifyProblems.summary` has the keys the status event showed before the registrar took
over notify handling (``total``, ``sources``, ``top``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Hashable

MAX_SOURCES = 256
"""Distinct ``type/id`` sources counted one by one; the rest are counted together."""
MAX_PROBLEMS = 1024
"""Distinct problems remembered as already logged; beyond that new ones go to DEBUG."""
OTHER = "(other)"


class NotifyProblems:
    """Counts notify messages per source and logs each distinct problem once."""

    def __init__(
        self,
        logger: logging.Logger,
        max_sources: int = MAX_SOURCES,
        max_problems: int = MAX_PROBLEMS,
    ) -> None:
        self.logger = logger
        self.max_sources = max_sources
        self.max_problems = max_problems
        self.total = 0
        self.per_source: Counter[str] = Counter()
        self._logged: set[Hashable] = set()
        self._full_logged = False

    def count(self, source: str) -> None:
        """Count one notify message about ``source`` (an escaped ``type/id`` or ``"?"``)."""
        if source in self.per_source or len(self.per_source) < self.max_sources:
            self.per_source[source] += 1
        else:
            self.per_source[OTHER] += 1

    def once(self, key: Hashable, level: int, message: str, *args: object) -> None:
        """Log ``message`` at ``level`` the first time ``key`` is seen, at DEBUG after that."""
        if key not in self._logged:
            if len(self._logged) < self.max_problems:
                self._logged.add(key)
            elif not self._full_logged:
                self._full_logged = True
                self.logger.warning(
                    "more than %d distinct notify problems: further new ones are logged at DEBUG",
                    self.max_problems,
                )
                level = logging.DEBUG
            else:
                level = logging.DEBUG
        else:
            level = logging.DEBUG
        if self.logger.isEnabledFor(level):
            self.logger.log(level, message, *args)

    def summary(self, top: int = 20) -> dict[str, object]:
        """For the status event: the total, the number of sources and the busiest ``top``."""
        return {
            "total": self.total,
            "sources": len(self.per_source),
            "top": dict(self.per_source.most_common(top)),
        }
