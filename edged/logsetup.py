"""Logging configured in one place: journald-friendly under systemd, timestamps elsewhere."""

from __future__ import annotations

import logging
import os
import sys
from collections import deque

_JOURNAL_PRIORITY = {
    logging.DEBUG: 7,
    logging.INFO: 6,
    logging.WARNING: 4,
    logging.ERROR: 3,
    logging.CRITICAL: 2,
}


class _JournalFormatter(logging.Formatter):
    """``<N>logger: message``: journald reads the ``<N>`` prefix as the priority."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _JOURNAL_PRIORITY.get(record.levelno, 6)
        return f"<{priority}>{record.name}: {super().format(record)}"


class RedactFilter(logging.Filter):
    """Replaces any secret's text in a log record with ``********`` (defence in depth)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [secret for secret in secrets if len(secret) >= 4]

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if any(secret in text for secret in self.secrets):
                for secret in self.secrets:
                    text = text.replace(secret, "********")
                record.msg, record.args = text, None
        return True


class RecentProblems(logging.Handler):
    """Keeps the last few warnings and errors for ``edged status`` (bounded, in memory)."""

    def __init__(self, capacity: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.records: deque[str] = deque(maxlen=capacity)
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.records.append(self.format(record)[:1000])
        except Exception:  # noqa: BLE001 - logging must never raise into the caller
            self.handleError(record)


RECENT = RecentProblems()
"""The daemon's recent warnings and errors (installed by :func:`setup_logging`)."""


def setup_logging(level: str = "info", secrets: list[str] | None = None) -> None:
    """Configure the root logger for the daemon (call once, from the CLI)."""
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        handler.setFormatter(_JournalFormatter("%(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(RedactFilter(secrets or []))
    root = logging.getLogger()
    RECENT.filters[:] = [RedactFilter(secrets or [])]
    root.handlers[:] = [handler, RECENT]
    root.setLevel(level.upper())
    # paho logs nothing unless given a logger; bleak is chatty at DEBUG. pymodbus is left to
    # the Modbus adapter, which silences it (quiet_pymodbus_logging) whether it runs before or
    # after this: a level set here would only be undone there, or undo it.
    logging.getLogger("bleak").setLevel(max(root.level, logging.WARNING))
