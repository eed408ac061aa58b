"""Exactly one answer per platform request, and no action carried out twice.

:class:`AnswerBook` is a :class:`~edged.requestbook.RequestBook` of return codes (see there
for the rules). Held in memory: the reboot of the gateway is the one request remembered across
a restart, by the agent's state file.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from edged.requestbook import RequestBook, Seen

REMEMBER_SECONDS = 900.0
REMEMBER_ENTRIES = 4096
KEEP_ANSWER_BYTES = 4096
"""Answers up to this size are kept verbatim; a repeat of a larger one gets its code only."""

__all__ = ["KEEP_ANSWER_BYTES", "AnswerBook", "Seen"]


class AnswerBook(RequestBook[int]):
    """The platform requests seen per device, with the return code and answer each got."""

    def __init__(
        self,
        *,
        seconds: float = REMEMBER_SECONDS,
        entries: int = REMEMBER_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            seconds=seconds, entries=entries, keep_bytes=KEEP_ANSWER_BYTES, clock=clock
        )
