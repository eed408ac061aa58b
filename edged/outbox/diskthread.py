"""The outbox's one blocking edge: a dedicated thread that owns the :class:`OutboxStore`.

Everything that touches the disk runs in this thread; the event loop hands it operations through
a queue and gets answers as futures, resolved on the loop with ``call_soon_threadsafe``. The loop
never waits for the disk (except :meth:`DiskThread.start`, once at start-up).

Batching: appends and deletes are applied as they arrive and committed together when
``commit_interval`` seconds have passed since the first uncommitted one, or ``commit_batch``
rows and ids are waiting, whichever comes first. An append's future resolves with the new ids
only once its rows are committed (durable as the store's ``synchronous`` mode promises). A load
or ``oldest_bulk`` first commits what is waiting, so every row it returns belongs to an append
whose future has already resolved.

Failures: when a commit fails (disk full, I/O error) the store keeps nothing since the last
commit. The waiting append futures fail with :class:`OutboxDiskFull` or :class:`OutboxIOError`
(the caller keeps those messages and appends them again later); the deletes are kept here and
tried again with the next commit, at the latest :data:`RETRY_DELAY` seconds later. After a full
disk the WAL is checkpointed and cut to zero bytes at once (it may be what fills it). The thread
keeps serving, and a later commit succeeds as soon as the disk does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from typing import Any

from edged.outbox.store import (
    OpenReport,
    OutboxDiskFull,
    OutboxError,
    OutboxIOError,
    OutboxStore,
    Row,
    StoredMessage,
)

log = logging.getLogger(__name__)

RETRY_DELAY = 1.0
"""Seconds after a failed commit before deletes alone are tried again."""
CLOSE_TIMEOUT = 5.0
"""Seconds :meth:`DiskThread.close` waits for the thread before giving up on it."""

_Settle = tuple["asyncio.Future[Any]", Any, BaseException | None]


class DiskThread:
    """The one commented blocking edge: a dedicated thread owning an OutboxStore; the event loop talks to it through futures."""  # noqa: E501

    def __init__(
        self, store: OutboxStore, *, commit_interval: float = 0.1, commit_batch: int = 1000
    ) -> None:
        if commit_interval < 0 or commit_batch < 1:
            raise ValueError("commit_interval must be >= 0 and commit_batch >= 1")
        self.store = store
        self.commit_interval = commit_interval
        self.commit_batch = commit_batch
        self._queue: queue.SimpleQueue[tuple[Any, ...]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outstanding: set[asyncio.Future[Any]] = set()
        self._closing = False
        self.totals: tuple[int, int] = (0, 0)
        """(rows, bytes) as of the last successful commit; read from any thread."""
        self.commits = 0
        """Successful commits that wrote something."""
        self.commit_failures = 0
        # Owned by the disk thread only:
        self._waiting: list[tuple[asyncio.Future[list[int]], list[int]]] = []
        self._deleted: list[int] = []  # applied since the last commit
        self._redo: list[int] = []  # deletes lost by a failed commit, to apply again
        self._ops = 0
        self._deadline: float | None = None

    # -- the loop's side ----------------------------------------------------------------------

    def start(self) -> OpenReport:
        """Open the store in the new thread and return what it found (blocks; start-up only).

        Raises what :meth:`OutboxStore.open` raises; the thread is then gone.
        """
        if self._thread is not None:
            raise RuntimeError("the disk thread was already started")
        opened: concurrent.futures.Future[OpenReport] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(opened,), name="edged-outbox-disk", daemon=True
        )
        self._thread.start()
        try:
            report = opened.result()
        except BaseException:
            self._thread.join()
            self._closing = True
            raise
        self.totals = (report.rows, report.bytes)
        return report

    def append(self, rows: Sequence[Row]) -> asyncio.Future[list[int]]:
        """Queue ``rows``; the future gives their ids once they are committed.

        Cancelling the future does not take the rows back.
        """
        future: asyncio.Future[list[int]] = self._future()
        self._queue.put(("append", list(rows), future))
        return future

    def delete(self, ids: Sequence[int]) -> None:
        """Queue the deletion of ``ids``; committed with the next batch."""
        self._check_open()
        if ids:
            self._queue.put(("delete", list(ids)))

    def load(self, after_id: int, limit: int) -> asyncio.Future[list[StoredMessage]]:
        """Up to ``limit`` stored messages with ``id > after_id`` in id order (commits first)."""
        future: asyncio.Future[list[StoredMessage]] = self._future()
        self._queue.put(("load", after_id, limit, future))
        return future

    def oldest_bulk(self, limit: int) -> asyncio.Future[list[tuple[int, str, int]]]:
        """(id, device, size) of the oldest lane-2 messages (commits first)."""
        future: asyncio.Future[list[tuple[int, str, int]]] = self._future()
        self._queue.put(("oldest", limit, future))
        return future

    def device_counts(self) -> asyncio.Future[list[tuple[int, str, int]]]:
        """(lane, device, rows) of every lane and device with stored rows (commits first)."""
        future: asyncio.Future[list[tuple[int, str, int]]] = self._future()
        self._queue.put(("counts", future))
        return future

    async def close(self) -> None:
        """Commit what is queued, close the store and end the thread (waits at most 5 s)."""
        thread = self._thread
        if thread is None or self._closing:
            self._closing = True
            return
        done: asyncio.Future[None] = self._future()
        self._closing = True
        self._queue.put(("close", done))
        try:
            await asyncio.wait_for(asyncio.shield(done), CLOSE_TIMEOUT)
        except TimeoutError:
            log.warning(
                "outbox: the disk thread did not finish within %.0f s (a hung disk?); "
                "left behind, uncommitted messages are not saved",
                CLOSE_TIMEOUT,
            )
            error = OutboxIOError(f"{self.store.path}: the disk thread did not finish in time")
            for future in list(self._outstanding):
                if not future.done():
                    future.set_exception(error)
            return
        thread.join(CLOSE_TIMEOUT)  # it has settled its last future: returns at once

    def _future(self) -> asyncio.Future[Any]:
        self._check_open()
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            raise RuntimeError("the disk thread serves one event loop")
        future: asyncio.Future[Any] = loop.create_future()
        self._outstanding.add(future)
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: asyncio.Future[Any]) -> None:
        self._outstanding.discard(future)
        if not self._outstanding:
            self._outstanding = set()  # a set never shrinks: let a burst's table go

    def _check_open(self) -> None:
        if self._thread is None or self._closing:
            raise RuntimeError("the disk thread is not running")

    # -- the disk thread's side ---------------------------------------------------------------

    def _run(self, opened: concurrent.futures.Future[OpenReport]) -> None:
        try:
            report = self.store.open()
        except BaseException as exc:  # noqa: BLE001 - handed to start(), which raises it
            opened.set_exception(exc)
            return
        opened.set_result(report)
        while True:
            op = self._next()
            if op is None:
                self._commit()
                continue
            ops = self._drain(op)
            try:
                if self._serve(ops):
                    return
            except Exception as exc:  # a bug: keep serving, never leave a future hanging
                log.exception("outbox: the disk thread failed on %s", [op[0] for op in ops])
                self._fail_batch(exc)
                self._settle(
                    [(op[-1], None, exc) for op in ops if isinstance(op[-1], asyncio.Future)]
                )
            if self._ops >= self.commit_batch or self._due():
                self._commit()
            del ops  # an idle thread keeps no batch of rows alive

    def _drain(self, op: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """``op`` and whatever else is queued, up to what fits in this batch."""
        ops = [op]
        room = self.commit_batch - self._ops
        while len(ops) < room:
            try:
                ops.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return ops

    def _serve(self, ops: list[tuple[Any, ...]]) -> bool:
        """Carry out ``ops`` in order; True once the thread is to end.

        The appends and deletes between two reads become one insert and one delete (a thousand
        single-row calls cost about three times as much as one call with a thousand rows). The
        deletes go first: a caller can only name ids it was given, so rows already committed,
        never rows of an append still waiting.
        """
        appends: list[tuple[Any, ...]] = []
        deletes: list[int] = []
        for op in ops:
            if op[0] == "append":
                appends.append(op)
            elif op[0] == "delete":
                deletes.extend(op[1])
            else:
                self._write(appends, deletes)
                appends, deletes = [], []
                if op[0] == "close":
                    self._close(op[1])
                    return True
                self._handle(op)
        self._write(appends, deletes)
        return False

    def _write(self, appends: list[tuple[Any, ...]], deletes: list[int]) -> None:
        if deletes:
            self._delete(deletes)
        if len(appends) == 1:
            self._append(appends[0][1], appends[0][2])
        elif appends:
            self._append_many(appends)

    def _next(self) -> tuple[Any, ...] | None:
        """The next operation, or None when a commit is due first."""
        if self._deadline is None:
            return self._queue.get()
        timeout = self._deadline - time.monotonic()
        if timeout <= 0:
            return None
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def _due(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    def _handle(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        if kind == "append":
            self._append(op[1], op[2])
        elif kind == "delete":
            self._delete(op[1])
        elif kind == "load":
            self._read(op[3], self.store.load, op[1], op[2])
        elif kind == "oldest":
            self._read(op[2], self.store.oldest_bulk, op[1])
        elif kind == "counts":
            self._read(op[1], self.store.device_counts)

    def _append(self, rows: list[Row], future: asyncio.Future[list[int]]) -> None:
        try:
            ids = self.store.append(rows)
        except ValueError as exc:
            self._settle([(future, None, exc)])
            return
        except OutboxError as exc:
            self._fail_batch(exc)
            self._settle([(future, None, exc)])
            return
        self._waiting.append((future, ids))
        self._count(len(ids))

    def _append_many(self, appends: list[tuple[Any, ...]]) -> None:
        try:
            ids = self.store.append([row for op in appends for row in op[1]])
        except ValueError:  # a malformed row: find it, so only its own append fails
            for _, rows, future in appends:
                self._append(rows, future)
            return
        except OutboxError as exc:
            self._fail_batch(exc)
            self._settle([(future, None, exc) for _, _, future in appends])
            return
        start = 0
        for _, rows, future in appends:
            self._waiting.append((future, ids[start : start + len(rows)]))
            start += len(rows)
        self._count(len(ids))

    def _delete(self, ids: list[int]) -> None:
        self._deleted.extend(ids)
        try:
            self.store.delete(ids)
        except OutboxError as exc:
            self._fail_batch(exc)
            return
        self._count(len(ids))

    def _count(self, ops: int) -> None:
        self._ops += ops
        deadline = time.monotonic() + self.commit_interval
        if self._deadline is None or deadline < self._deadline:
            self._deadline = deadline

    def _read(self, future: asyncio.Future[Any], read: Any, *args: int) -> None:
        if self._ops or self._redo:
            self._commit()
        try:
            self._settle([(future, read(*args), None)])
        except OutboxError as exc:
            self._settle([(future, None, exc)])

    def _commit(self) -> None:
        self._deadline = None
        try:
            if self._redo:
                redo, self._redo = self._redo, []
                self._deleted.extend(redo)
                self.store.delete(redo)
            wrote = self.store.in_transaction
            self.store.commit()
        except OutboxError as exc:
            self._fail_batch(exc)
            return
        waiting, self._waiting = self._waiting, []
        self._deleted, self._ops = [], 0
        self.totals = self.store.committed_totals()
        self.commits += wrote
        self._settle([(future, ids, None) for future, ids in waiting])

    def _fail_batch(self, exc: BaseException) -> None:
        """Everything since the last commit is gone: fail its appends, keep its deletes."""
        self.store.rollback()
        if isinstance(exc, OutboxDiskFull):
            self.store.checkpoint()  # a WAL of rewritten pages may be what fills the disk
        self.commit_failures += 1
        waiting, self._waiting = self._waiting, []
        self._redo = self._deleted + self._redo
        self._deleted, self._ops = [], 0
        self._deadline = time.monotonic() + RETRY_DELAY if self._redo else None
        self._settle([(future, None, exc) for future, _ in waiting])

    def _close(self, done: asyncio.Future[None]) -> None:
        try:
            self._commit()
        finally:
            self.store.close()
            self._settle([(done, None, None)])

    def _settle(self, outcomes: list[_Settle]) -> None:
        if not outcomes or self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(_settle_all, outcomes)


def _settle_all(outcomes: list[_Settle]) -> None:
    """On the loop: resolve each future unless its waiter gave up (cancelled)."""
    for future, value, exc in outcomes:
        if future.done():
            continue
        if exc is None:
            future.set_result(value)
        else:
            future.set_exception(exc)
