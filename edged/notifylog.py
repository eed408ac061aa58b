"""The platform's notify messages about the gateway's requests: parsed, logged once, counted.

The platform publishes one on the gateway's ``notify`` topic when it refuses a request (a
failed auto-registration, a topic no rule allows; PROTOCOL.md section 3). Everything in one is
outside-supplied text: it is escaped and cut before it is logged or kept, and what is kept is
bounded however many distinct messages arrive.
"""

from __future__ import annotations

import logging
from collections import Counter

import orjson

from edged.text import safe

log = logging.getLogger("edged.notify")

MAX_SOURCES = 256
"""Distinct ``type/id`` sources counted one by one; the rest are counted together."""
MAX_PROBLEMS = 1024
"""Distinct (source, message) pairs remembered as already logged."""
OTHER = "(other)"


class NotifyLog:
    """Counts notify messages per source and logs each distinct problem once."""

    def __init__(self, max_sources: int = MAX_SOURCES, max_problems: int = MAX_PROBLEMS) -> None:
        self.max_sources = max_sources
        self.max_problems = max_problems
        self.total = 0
        self.per_source: Counter[str] = Counter()
        self._logged: set[tuple[str, str]] = set()

    def handle(self, payload: bytes) -> None:
        """Take one notify message (any bytes; never raises)."""
        self.total += 1
        try:
            body = orjson.loads(payload)
        except orjson.JSONDecodeError:
            log.warning("platform notify message is not JSON (%d bytes)", len(payload))
            return
        if not isinstance(body, dict):
            log.warning("platform notify message is not a JSON object")
            return
        where = f"{safe(body.get('Type', '?'), 40)}/{safe(body.get('Id', '?'), 40)}"
        message = safe(body.get("Message", "no message"))
        self._count(where)
        problem = (where, message)
        # The platform may send one notify per dropped message: log each problem once.
        if problem in self._logged:
            level = logging.DEBUG
        else:
            level = logging.WARNING
            if len(self._logged) < self.max_problems:
                self._logged.add(problem)
        if not log.isEnabledFor(level):
            return
        log.log(
            level,
            "platform refused a %s for %s: %s (RC %s, topic %s); repeats are counted in status",
            safe(body.get("Request", "request"), 40),
            where,
            message,
            safe(body.get("RC", "?"), 20),
            safe(body.get("Topic", "?")),
        )

    def _count(self, where: str) -> None:
        if where in self.per_source or len(self.per_source) < self.max_sources:
            self.per_source[where] += 1
        else:
            self.per_source[OTHER] += 1

    def summary(self, top: int = 20) -> dict[str, object]:
        """For the status event: the total, the number of sources and the busiest ``top``."""
        return {
            "total": self.total,
            "sources": len(self.per_source),
            "top": dict(self.per_source.most_common(top)),
        }
