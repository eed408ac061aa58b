"""Logging configured in one place: journald-native under systemd, timestamps elsewhere.

Under systemd (stderr is the journal stream systemd named in ``JOURNAL_STREAM``) records go to
journald through systemd-python's ``JournalHandler`` with structured fields: the usual
``PRIORITY``, ``LOGGER``, ``CODE_*``, plus ``EDGED_DEVICE`` and ``EDGED_ADAPTER`` when a log call
passes them (``log.warning(..., extra=device_extra(device))``), so that
``journalctl -u edged EDGED_DEVICE=boiler/b-1`` selects one device's lines. Without
systemd-python (an optional dependency: Debian's python3-systemd) the same lines go to stderr
with a ``<N>`` priority prefix, and elsewhere to stderr with timestamps; the fields are then
simply not shown.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections import deque
from typing import Any, TextIO

DEVICE_FIELD = "EDGED_DEVICE"
"""Journal field naming a device, ``type/id``."""
ADAPTER_FIELD = "EDGED_ADAPTER"
"""Journal field naming an adapter instance as the supervisor does, e.g. ``modbus:/dev/ttyUSB0``."""

# What journald accepts as a field name from a client (no leading underscore: those are trusted).
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")


def device_extra(device: object, adapter: str | None = None) -> dict[str, str]:
    """Journal fields for a log call about one device: ``log.info(..., extra=device_extra(d))``."""
    fields = {DEVICE_FIELD: str(device)}
    if adapter is not None:
        fields[ADAPTER_FIELD] = adapter
    return fields


def adapter_extra(adapter: str) -> dict[str, str]:
    """Journal fields for a log call about an adapter instance (its supervisor name)."""
    return {ADAPTER_FIELD: adapter}


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


def stream_is_journal(stream: TextIO) -> bool:
    """Whether ``stream`` is the journal stream systemd connected (``JOURNAL_STREAM=dev:inode``).

    systemd sets the variable for the service's stdout/stderr; a child whose stderr was
    redirected elsewhere inherits it, hence the comparison with the stream's own device and inode.
    """
    dev, _, ino = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (dev.isdigit() and ino.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # closed, or no descriptor (a test capture)
        return False
    return (st.st_dev, st.st_ino) == (int(dev), int(ino))


def _send_fields(message: str, /, **fields: Any) -> None:
    """``JournalHandler``'s sender: only valid journal field names, looked up at each call.

    ``JournalHandler`` passes every attribute of the record (``msg``, ``args``, ``levelname``,
    ...); journald would ignore the lower-case ones, so they are not sent at all.
    """
    journal = importlib.import_module("systemd.journal")
    kept = {
        name: value
        for name, value in fields.items()
        if _FIELD_NAME.fullmatch(name) and name != "EXCEPTION_INFO"  # the text is in MESSAGE
    }
    journal.send(message, **kept)


def journal_handler() -> logging.Handler | None:
    """A ``systemd.journal.JournalHandler`` for this daemon, or None without systemd-python."""
    try:
        journal = importlib.import_module("systemd.journal")
    except ImportError:
        return None
    handler: logging.Handler = journal.JournalHandler(
        sender_function=_send_fields, SYSLOG_IDENTIFIER="edged"
    )
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    return handler


def setup_logging(
    level: str = "info", secrets: list[str] | None = None, *, stream: TextIO | None = None
) -> None:
    """Configure the root logger for the daemon (call once, from the CLI).

    ``stream`` is where plain lines go (default ``sys.stderr``); when it is systemd's journal
    stream and systemd-python is installed, records go to journald natively instead.
    """
    stream = stream or sys.stderr
    under_journal = stream_is_journal(stream)
    handler = journal_handler() if under_journal else None
    if handler is None:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(
            _JournalFormatter("%(message)s")
            if under_journal
            else logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s")
        )
    handler.addFilter(RedactFilter(secrets or []))
    root = logging.getLogger()
    RECENT.filters[:] = [RedactFilter(secrets or [])]
    root.handlers[:] = [handler, RECENT]
    root.setLevel(level.upper())
    # paho logs nothing unless given a logger; bleak is chatty at DEBUG. pymodbus is left to
    # the Modbus adapter, which silences it (quiet_pymodbus_logging) whether it runs before or
    # after this: a level set here would only be undone there, or undo it.
    logging.getLogger("bleak").setLevel(max(root.level, logging.WARNING))
