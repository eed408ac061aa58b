"""Resource figures of another process, read from ``/proc`` (Linux only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    """One reading of a process's resources."""

    rss: int
    """Resident memory in bytes (``VmRSS``)."""
    fds: int
    """Open file descriptors (entries in ``/proc/PID/fd``)."""
    threads: int
    """Threads (``Threads`` in ``/proc/PID/status``)."""


def usage(pid: int) -> Usage:
    """Read ``pid``'s resident memory, open file descriptors and threads now.

    Raises:
        OSError: the process is gone (or not ours to inspect).
    """
    fields: dict[str, str] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return Usage(
        rss=int(fields["VmRSS"].split()[0]) * 1024,
        fds=len(os.listdir(f"/proc/{pid}/fd")),
        threads=int(fields["Threads"]),
    )
