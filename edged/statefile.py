"""Small JSON documents the daemon keeps across restarts (registrations, device management).

A :class:`StateFile` holds one JSON object. Reading happens once, at start (a missing file is
an empty document; an unreadable or corrupt one is logged, moved aside as ``<name>.corrupt``
and treated as empty, so a bad file never stops the daemon). Writes are atomic (a temporary
file in the same directory, fsync, rename, fsync of the directory): after a power cut the
file holds either the old or the new document, never a mix.

Blocking edge: the write runs in a worker thread (``asyncio.to_thread``); changes made while a
write is in progress are collected and written once it ends, so a burst of changes costs one
or two writes, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import orjson

log = logging.getLogger(__name__)

MAX_STATE_BYTES = 16 * 1024 * 1024
"""A state file larger than this is treated as corrupt (ours stay far below it)."""


class StateFile:
    """One JSON object on disk, saved atomically and in the background."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.failures = 0
        self._dirty = False
        self._writer: asyncio.Task[None] | None = None
        self._snapshot: Any = None

    def load(self) -> dict[str, Any]:
        """The stored document (blocks briefly: called once at start, before the loop is busy)."""
        try:
            with open(self.path, "rb") as file:
                data = file.read(MAX_STATE_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.error("cannot read %s (%s); starting with an empty state", self.path, exc)
            return {}
        try:
            if len(data) > MAX_STATE_BYTES:
                raise ValueError(f"larger than {MAX_STATE_BYTES} bytes")
            document = orjson.loads(data)
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
            aside = f"{self.path}.corrupt"
            log.error("%s is corrupt (%s); moved to %s, starting empty", self.path, exc, aside)
            with contextlib.suppress(OSError):
                os.replace(self.path, aside)
            return {}
        return document

    def save(self, document: dict[str, Any]) -> None:
        """Write ``document`` soon (in the background); the latest one given wins."""
        self._snapshot = orjson.dumps(document)
        self._dirty = True
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_pending(), name=f"statefile:{os.path.basename(self.path)}"
            )

    async def flush(self) -> None:
        """Wait until everything saved so far is on disk (or failed and was logged)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    def save_now(self, document: dict[str, Any]) -> None:
        """Write ``document`` synchronously (shutdown, tests): blocks for one fsync."""
        self._write(orjson.dumps(document))

    async def _write_pending(self) -> None:
        while self._dirty:
            self._dirty = False
            data = self._snapshot
            try:
                await asyncio.to_thread(self._write, data)  # blocking edge: file I/O + fsync
            except OSError as exc:
                self.failures += 1
                log.error(
                    "cannot write %s: %s (kept in memory; retried on the next change)",
                    self.path,
                    exc,
                )

    def _write(self, data: bytes) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        os.makedirs(directory, exist_ok=True)
        temporary = f"{self.path}.tmp"
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)
        descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


def sibling_path(path: str, name: str) -> str:
    """``name`` in the directory of ``path`` (state files live next to the outbox)."""
    return os.path.join(os.path.dirname(os.path.abspath(path)), name)
