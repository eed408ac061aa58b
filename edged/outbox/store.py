"""The outbox's on-disk store: one SQLite database in WAL mode, used from one thread only.

Every method blocks on disk I/O; :class:`edged.outbox.diskthread.DiskThread` is the only caller
in the daemon. The file layout, durability and failure handling are described in
``docs/outbox.md``; the rules in short:

* **Ids** come from a counter in this object, never from SQLite, so they only grow: within a run
  even when the table empties, and across runs because a block of ids is reserved in the
  ``meta`` table (in the same transaction as the first row that uses it) and a restart starts
  after the reservation. An id is therefore never handed out twice.
* **Nothing is written until** :meth:`OutboxStore.commit`; any failure rolls back everything
  since the last commit, so the database always holds whole commits.
* **Opening** moves a file that is not a usable outbox aside (never deletes it), refuses a file
  from a newer schema without writing to it, and holds an exclusive lock while open, so a second
  daemon on the same file is refused instead of sending the same messages.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
import struct
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

import orjson

from edged.errors import EdgedError

LANES: Final = (0, 1, 2)
"""0 = priority (command results, device management), 1 = alarm, 2 = bulk telemetry."""
BULK_LANE: Final = 2
APPLICATION_ID: Final = 0x65646764
"""``PRAGMA application_id`` of an edged outbox ("edgd"): tells ours from another SQLite file."""
PAGE_SIZE: Final = 1024
"""Bytes per page of a new database. Every commit rewrites a handful of whole pages; with typical
~250-byte events, 1 KiB pages write about half the bytes per event that 4 KiB pages do."""
WAL_AUTOCHECKPOINT: Final = 1000
"""Pages of WAL (about 1 MiB at 1 KiB pages) before a checkpoint copies them into the database
and the WAL is reused from its start. Each checkpoint costs two fsyncs; at 100 events/s it comes
every few seconds, which also bounds what a power cut can take under ``synchronous=NORMAL``."""
JOURNAL_SIZE_LIMIT: Final = 2 * 1024 * 1024
"""The WAL file is cut back to this many bytes when it is reused after a checkpoint (it only
grows past its usual ~1 MiB for a transaction larger than that)."""
ROWS_PER_STATEMENT: Final = 128
"""Rows per INSERT statement: 7 parameters each stays under SQLite's oldest limit of 999."""
ID_BLOCK: Final = 1 << 20
"""Ids reserved per ``meta`` write (one small write per million messages and per start)."""
BUSY_TIMEOUT: Final = 0.5
"""Seconds to wait for a lock held by someone else before calling the file in use."""
SYNCHRONOUS_MODES: Final = ("NORMAL", "FULL")

_HEADER = b"SQLite format 3\x00"
_SCHEMA: Final = (
    """CREATE TABLE messages (
        id INTEGER PRIMARY KEY,
        lane INTEGER NOT NULL,
        device TEXT NOT NULL,
        topic TEXT NOT NULL,
        payload BLOB NOT NULL,
        qos INTEGER NOT NULL,
        created REAL NOT NULL
    )""",
    # Entries are (lane, rowid): lane 2 in id order without reading the other lanes.
    "CREATE INDEX messages_lane ON messages (lane)",
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID",
)
_FULL, _NOTADB, _CORRUPT = 13, 26, 11
_PATH_CODES = frozenset({3, 8, 14, 23})  # PERM, READONLY, CANTOPEN, AUTH
_BUSY_CODES = frozenset({5, 6})  # BUSY, LOCKED

Row = tuple[int, str, str, bytes, int, float]
"""(lane, device, topic, payload, qos, created) as given to :meth:`OutboxStore.append`."""


class OutboxError(EdgedError):
    """Base of the outbox store's errors."""


class OutboxSchemaError(OutboxError):
    """The database was written by a newer edged; it is left exactly as it is."""


class OutboxPathError(OutboxError):
    """The database path cannot be used (missing directory, not writable, in use)."""


class OutboxDiskFull(OutboxError):
    """The file system is full; nothing since the last commit was written."""


class OutboxIOError(OutboxError):
    """The disk failed (I/O error, read-only remount, ...); nothing since the last commit."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One message as stored; ``id`` grows with insertion order and is never reused."""

    id: int
    lane: int
    device: str
    topic: str
    payload: bytes
    qos: int
    created: float


@dataclass(frozen=True, slots=True)
class OpenReport:
    """What :meth:`OutboxStore.open` found."""

    path: str
    created: bool
    """A new, empty database was created (no file, an empty file, or one moved aside)."""
    rows: int
    bytes: int
    """Payload and topic bytes stored, as :meth:`OutboxStore.totals`."""
    moved_aside: str | None = None
    """The new name of an unusable file that was moved aside, else None."""
    reason: str | None = None
    """Why it was moved aside (for the caller's one log line)."""


class _Unusable(Exception):
    """The file is not a usable outbox: move it aside."""


def message_size(topic: str, payload: bytes) -> int:
    """The bytes a message counts in :meth:`OutboxStore.totals` and ``oldest_bulk``."""
    return len(payload) + len(topic.encode("utf-8"))


def error_code(exc: sqlite3.Error) -> int:
    """SQLite's primary result code of ``exc`` (0 when unknown)."""
    code = getattr(exc, "sqlite_errorcode", 0)
    return int(code) & 0xFF


def disk_error(exc: sqlite3.Error, path: str) -> OutboxDiskFull | OutboxIOError:
    """The outbox error for a failed write: disk full or any other I/O failure."""
    if error_code(exc) == _FULL:
        return OutboxDiskFull(f"{path}: the file system is full ({exc})")
    return OutboxIOError(f"{path}: writing the outbox failed: {exc}")


class OutboxStore:
    """Blocking sqlite3; used only from the disk thread."""

    SCHEMA_VERSION = 1

    def __init__(self, path: str, *, synchronous: str = "NORMAL") -> None:
        mode = synchronous.upper()
        if mode not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, not {synchronous!r}")
        self.path = os.fspath(path)
        self.synchronous = mode
        self._conn: sqlite3.Connection | None = None
        self._next_id = 1
        self._id_limit = 0  # ids below this are reserved in meta (committed)
        self._pending_limit = 0  # the same, including this transaction
        self._rows = self._bytes = 0
        self._pending_rows = self._pending_bytes = 0

    # -- opening ------------------------------------------------------------------------------

    def open(self) -> OpenReport:
        """Create or open the database; see the module docstring and ``docs/outbox.md``.

        Raises:
            OutboxSchemaError: written by a newer edged (the file is not changed).
            OutboxPathError: the directory is missing, the path is not writable or in use.
            OutboxDiskFull, OutboxIOError: the disk failed; the file is not moved aside.
        """
        if self._conn is not None:
            raise RuntimeError("the outbox store is already open")
        self._check_path()
        existed = os.path.exists(self.path) and os.path.getsize(self.path) > 0
        try:
            self._open_checked()
        except _Unusable as unusable:
            self._close_quietly()
            moved = self._move_aside()
            self._open_checked()  # a fresh file: its own errors are real errors
            return self._report(created=True, moved_aside=moved, reason=str(unusable))
        return self._report(created=not existed)

    def _report(
        self, *, created: bool, moved_aside: str | None = None, reason: str | None = None
    ) -> OpenReport:
        return OpenReport(self.path, created, self._rows, self._bytes, moved_aside, reason)

    def _check_path(self) -> None:
        # Checked here because SQLite would open a file it cannot write read-only and fail
        # later with a vague "disk I/O error". As root only a read-only file system shows.
        directory = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(directory):
            raise OutboxPathError(f"{self.path}: the directory {directory} does not exist")
        if not os.access(directory, os.W_OK | os.X_OK):
            raise OutboxPathError(
                f"{self.path}: the directory {directory} is not writable "
                "(permissions, or a read-only file system)"
            )
        try:
            mode = os.stat(self.path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutboxPathError(f"{self.path}: cannot use the outbox file: {exc}") from exc
        if not stat.S_ISREG(mode):
            raise OutboxPathError(f"{self.path}: not a regular file")
        if not os.access(self.path, os.R_OK | os.W_OK):
            raise OutboxPathError(f"{self.path}: the outbox file is not readable and writable")

    def _open_checked(self) -> None:
        self._check_header()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=BUSY_TIMEOUT)
        except sqlite3.Error as exc:
            raise self._open_error(exc) from exc
        self._conn = conn
        try:
            self._prepare(conn)
        except sqlite3.Error as exc:
            self._close_quietly()
            if error_code(exc) in (_NOTADB, _CORRUPT):
                raise _Unusable(f"the database is damaged ({exc})") from exc
            raise self._open_error(exc) from exc
        except BaseException:
            self._close_quietly()
            raise

    def _check_header(self) -> None:
        """Look at the file's header without SQLite: garbage or a newer schema writes nothing."""
        try:
            with open(self.path, "rb") as file:
                header = file.read(100)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise OutboxPathError(f"{self.path}: cannot read the outbox file: {exc}") from exc
        if not header:
            return
        if len(header) < 100 or not header.startswith(_HEADER):
            raise _Unusable("not an SQLite database")
        user_version, application_id = struct.unpack(">i4xi", header[60:72])
        self._check_version(user_version, application_id)

    def _check_version(self, user_version: int, application_id: int) -> None:
        if application_id not in (0, APPLICATION_ID):
            raise _Unusable(
                f"an SQLite database of another program (application_id {application_id:#x})"
            )
        if application_id == APPLICATION_ID and user_version > self.SCHEMA_VERSION:
            raise OutboxSchemaError(
                f"{self.path}: the outbox has schema version {user_version}, written by a newer "
                f"edged (this one knows version {self.SCHEMA_VERSION}); it was not changed. Run "
                "the newer edged, or move the file away to start with an empty outbox."
            )

    def _prepare(self, conn: sqlite3.Connection) -> None:
        # Exclusive: a second process is refused, and the WAL index lives in memory (no -shm).
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute(f"PRAGMA page_size = {PAGE_SIZE}")  # only takes effect on a new file
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxIOError(f"{self.path}: cannot switch the outbox to WAL mode ({mode})")
        user_version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        application_id = int(conn.execute("PRAGMA application_id").fetchone()[0])
        self._check_version(user_version, application_id)
        if user_version == 0:
            self._create_schema(conn)
        elif application_id != APPLICATION_ID:
            raise _Unusable(f"an SQLite database of another program (user_version {user_version})")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}")
        conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
        self._verify(conn)

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        if conn.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
            raise _Unusable("an SQLite database of another program (it holds other tables)")
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {self.SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _verify(self, conn: sqlite3.Connection) -> None:
        """Check the structure and compute the running totals; damage means move aside."""
        problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise _Unusable("the database is damaged: " + "; ".join(map(str, problems)))
        try:
            rows, top, size = conn.execute(
                "SELECT count(*), coalesce(max(id), 0), "
                "coalesce(sum(length(payload) + length(CAST(topic AS BLOB))), 0) FROM messages"
            ).fetchone()
            limit = conn.execute("SELECT value FROM meta WHERE key = 'id_limit'").fetchone()
            conn.execute(
                "SELECT id, lane, device, topic, payload, qos, created FROM messages LIMIT 0"
            )
        except sqlite3.OperationalError as exc:  # a table or column is missing
            raise _Unusable(f"not an edged outbox ({exc})") from exc
        self._rows = self._pending_rows = int(rows)
        self._bytes = self._pending_bytes = int(size)
        self._id_limit = self._pending_limit = int(limit[0]) if limit else 0
        self._next_id = max(int(top) + 1, self._id_limit, 1)
        # Take the write lock now and keep it (locking_mode EXCLUSIVE) until close.
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("COMMIT")

    def _open_error(self, exc: sqlite3.Error) -> OutboxError:
        code = error_code(exc)
        if code in _BUSY_CODES:
            return OutboxPathError(f"{self.path}: the outbox is in use by another process ({exc})")
        if code in _PATH_CODES:
            return OutboxPathError(f"{self.path}: cannot open the outbox for writing ({exc})")
        return disk_error(exc, self.path)

    def _move_aside(self) -> str:
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        target = f"{self.path}.corrupt-{stamp}"
        n = 1
        while os.path.lexists(target):
            n += 1
            target = f"{self.path}.corrupt-{stamp}-{n}"
        try:
            for suffix in ("-wal", "-shm"):
                if os.path.lexists(self.path + suffix):
                    os.rename(self.path + suffix, target + suffix)
            os.rename(self.path, target)
            _sync_directory(os.path.dirname(os.path.abspath(self.path)))
        except OSError as exc:
            raise OutboxPathError(
                f"{self.path}: the outbox is unusable and cannot be moved aside: {exc}"
            ) from exc
        return target

    # -- writing ------------------------------------------------------------------------------

    def append(self, rows: Sequence[Row]) -> list[int]:
        """Insert ``rows`` (lane, device, topic, payload, qos, created); the new ids, in order.

        Not committed until :meth:`commit`. A malformed row raises ValueError and changes
        nothing; a disk failure rolls back everything since the last commit and raises.
        """
        checked = [_checked_row(row) for row in rows]
        if not checked:
            return []
        conn = self._connection()
        first = self._next_id
        ids = list(range(first, first + len(checked)))
        self._next_id += len(checked)
        with self._writing():
            self._begin(conn)
            if self._next_id > self._pending_limit:
                self._pending_limit = self._next_id + ID_BLOCK
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('id_limit', ?)",
                    (self._pending_limit,),
                )
            # One multi-row statement per chunk, not executemany: sqlite3 releases and retakes
            # the GIL at every step, and while the event loop is busy each retake can wait a
            # whole switch interval (5 ms), which made a busy daemon insert ~700 rows/s.
            values = [(ident, *row) for ident, row in zip(ids, checked, strict=True)]
            for start in range(0, len(values), ROWS_PER_STATEMENT):
                chunk = values[start : start + ROWS_PER_STATEMENT]
                conn.execute(
                    "INSERT INTO messages (id, lane, device, topic, payload, qos, created) "
                    "VALUES " + ",".join(["(?, ?, ?, ?, ?, ?, ?)"] * len(chunk)),
                    [field for row in chunk for field in row],
                )
        self._pending_rows += len(checked)
        self._pending_bytes += sum(message_size(row[2], row[3]) for row in checked)
        return ids

    def delete(self, ids: Sequence[int]) -> None:
        """Delete the rows with these ids (unknown ids are ignored); not committed yet."""
        if not ids:
            return
        conn = self._connection()
        with self._writing():
            self._begin(conn)
            # Sizes first, as one aggregate row, then the delete: two steps however many ids
            # (a RETURNING row per id would cross the GIL once per id; see append).
            listed = "[" + ",".join(str(int(ident)) for ident in ids) + "]"
            count, size = conn.execute(
                "SELECT COUNT(*), TOTAL(length(payload) + length(CAST(topic AS BLOB))) "
                "FROM messages WHERE id IN (SELECT value FROM json_each(?))",
                (listed,),
            ).fetchone()
            conn.execute(
                "DELETE FROM messages WHERE id IN (SELECT value FROM json_each(?))", (listed,)
            )
        self._pending_rows -= int(count)
        self._pending_bytes -= int(size)

    def commit(self) -> None:
        """Commit everything since the last commit in one transaction.

        Raises:
            OutboxDiskFull, OutboxIOError: nothing since the last commit was kept (rolled back).
        """
        conn = self._connection()
        if not conn.in_transaction:
            return
        with self._writing():
            conn.execute("COMMIT")
        self._rows, self._bytes = self._pending_rows, self._pending_bytes
        self._id_limit = self._pending_limit

    def rollback(self) -> None:
        """Forget everything since the last commit (ids handed out are not reused)."""
        conn = self._connection()
        with contextlib.suppress(sqlite3.Error):
            if conn.in_transaction:
                conn.execute("ROLLBACK")
        self._pending_rows, self._pending_bytes = self._rows, self._bytes
        self._pending_limit = self._id_limit

    def checkpoint(self) -> bool:
        """Copy the WAL into the database and cut the WAL to zero bytes; False if that failed.

        For a full disk: a WAL grows up to :data:`WAL_AUTOCHECKPOINT` pages before SQLite does
        this by itself, and most of it is pages rewritten many times over.
        """
        conn = self._connection()
        if conn.in_transaction:
            return False
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        except sqlite3.Error:
            return False
        return not busy

    @property
    def in_transaction(self) -> bool:
        """Whether appends or deletes wait for :meth:`commit`."""
        return self._conn is not None and self._conn.in_transaction

    def _begin(self, conn: sqlite3.Connection) -> None:
        if not conn.in_transaction:
            conn.execute("BEGIN IMMEDIATE")

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            self.rollback()
            raise disk_error(exc, self.path) from exc

    # -- reading ------------------------------------------------------------------------------

    def load(self, after_id: int, limit: int) -> list[StoredMessage]:
        """Up to ``limit`` messages with ``id > after_id``, in id order (uncommitted included)."""
        if limit <= 0:
            return []
        # The whole page as one JSON row (payloads in hex): one step, so the GIL is crossed
        # once per page instead of once per row (see append).
        rows = self._read(
            "SELECT json_group_array(json_array(id, lane, device, topic, hex(payload), qos, "
            "created)) FROM (SELECT * FROM messages WHERE id > ? ORDER BY id LIMIT ?)",
            (after_id, limit),
        )
        [(page,)] = rows
        messages = [
            StoredMessage(ident, lane, device, topic, bytes.fromhex(payload), qos, created)
            for ident, lane, device, topic, payload, qos, created in orjson.loads(page)
        ]
        messages.sort(key=lambda message: message.id)  # an aggregate's order is not promised
        return messages

    def oldest_bulk(self, limit: int) -> list[tuple[int, str, int]]:
        """(id, device, size) of the oldest ``limit`` lane-2 messages, oldest first."""
        if limit <= 0:
            return []
        cursor = self._read(
            "SELECT id, device, length(payload) + length(CAST(topic AS BLOB)) FROM messages "
            "WHERE lane = 2 ORDER BY id LIMIT ?",
            (limit,),
        )
        return [(int(ident), str(device), int(size)) for ident, device, size in cursor]

    def device_counts(self) -> list[tuple[int, str, int]]:
        """(lane, device, rows) for every lane and device with stored rows."""
        cursor = self._read(
            "SELECT lane, device, COUNT(*) FROM messages WHERE id > ? GROUP BY lane, device",
            (0,),
        )
        return [(int(lane), str(device), int(count)) for lane, device, count in cursor]

    def totals(self) -> tuple[int, int]:
        """(rows, payload + topic bytes) stored, counting uncommitted appends and deletes."""
        return self._pending_rows, self._pending_bytes

    def committed_totals(self) -> tuple[int, int]:
        """(rows, payload + topic bytes) as of the last commit."""
        return self._rows, self._bytes

    def _read(self, sql: str, params: tuple[int, ...]) -> list[Any]:
        try:
            return self._connection().execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise OutboxIOError(f"{self.path}: reading the outbox failed: {exc}") from exc

    # -- closing ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the database; anything not committed is rolled back. Idempotent."""
        if self._conn is None:
            return
        self.rollback()
        self._close_quietly()

    def _close_quietly(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("the outbox store is not open")
        return self._conn


def _checked_row(row: Row) -> Row:
    lane, device, topic, payload, qos, created = row
    if lane not in LANES:
        raise ValueError(f"lane must be one of {LANES}, not {lane!r}")
    if qos not in (0, 1, 2):
        raise ValueError(f"qos must be 0, 1 or 2, not {qos!r}")
    if not isinstance(device, str) or not isinstance(topic, str):
        raise ValueError("device and topic must be str")
    if not isinstance(payload, bytes):
        raise ValueError(f"payload must be bytes, not {type(payload).__name__}")
    return (int(lane), device, topic, payload, int(qos), float(created))


def _sync_directory(directory: str) -> None:
    """Make a rename in ``directory`` survive a power cut."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
