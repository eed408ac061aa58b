"""OutboxStore against real SQLite files in tmp_path: every method, ids, totals, bad files."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

import edged.outbox.store as store_module
from edged.outbox.store import (
    APPLICATION_ID,
    OutboxPathError,
    OutboxSchemaError,
    OutboxStore,
    Row,
    StoredMessage,
)


def row(n: int, *, lane: int = 2, device: str = "meter/m1", topic: str = "t") -> Row:
    return (lane, device, topic, f"payload-{n}".encode(), 1, 1000.0 + n)


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "outbox.db")


@pytest.fixture
def store(path: str) -> Iterator[OutboxStore]:
    instance = OutboxStore(path)
    instance.open()
    try:
        yield instance
    finally:
        instance.close()


def reopened(path: str) -> OutboxStore:
    instance = OutboxStore(path)
    instance.open()
    return instance


def all_rows(path: str) -> list[StoredMessage]:
    instance = reopened(path)
    try:
        return instance.load(0, 1_000_000)
    finally:
        instance.close()


def digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def inspect(path: str, sql: str) -> object:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql).fetchone()[0]
    finally:
        conn.close()


# -- opening a new file ------------------------------------------------------------------------


def test_open_creates_a_wal_database_with_version_and_application_id(path: str) -> None:
    store = OutboxStore(path)
    report = store.open()
    assert report.created and report.moved_aside is None
    assert (report.rows, report.bytes) == (0, 0)
    # Exclusive locking keeps the WAL index in memory: no -shm file while open.
    assert not os.path.exists(path + "-shm")
    store.close()
    assert os.listdir(os.path.dirname(path)) == ["outbox.db"]
    assert inspect(path, "PRAGMA user_version") == OutboxStore.SCHEMA_VERSION
    assert inspect(path, "PRAGMA application_id") == APPLICATION_ID
    assert inspect(path, "PRAGMA journal_mode") == "wal"
    assert inspect(path, "PRAGMA page_size") == store_module.PAGE_SIZE


def test_an_empty_file_is_a_new_database(path: str) -> None:
    Path(path).touch()
    store = OutboxStore(path)
    report = store.open()
    store.close()
    assert report.created and report.moved_aside is None
    assert os.listdir(os.path.dirname(path)) == ["outbox.db"]


def test_an_existing_database_reports_what_it_holds(path: str) -> None:
    store = reopened(path)
    store.append([row(1), row(2, topic="tö")])
    store.commit()
    store.close()
    again = OutboxStore(path)
    report = again.open()
    again.close()
    assert not report.created
    assert (report.rows, report.bytes) == (2, len(b"payload-1t") + len("payload-2tö".encode()))


@pytest.mark.parametrize("mode", ["NORMAL", "full"])
def test_synchronous_mode_is_applied(path: str, mode: str) -> None:
    store = OutboxStore(path, synchronous=mode)
    store.open()
    try:
        conn = store._conn
        assert conn is not None
        assert (
            conn.execute("PRAGMA synchronous").fetchone()[0]
            == {"NORMAL": 1, "FULL": 2}[mode.upper()]
        )
    finally:
        store.close()


@pytest.mark.parametrize("mode", ["OFF", "EXTRA", "fast"])
def test_other_synchronous_modes_are_refused(path: str, mode: str) -> None:
    with pytest.raises(ValueError, match="synchronous must be one of"):
        OutboxStore(path, synchronous=mode)


# -- append, commit, load ----------------------------------------------------------------------


def test_append_returns_growing_ids_and_commit_makes_rows_durable(path: str) -> None:
    store = reopened(path)
    first = store.append([row(1), row(2, lane=0)])
    second = store.append([row(3, lane=1)])
    assert first[1] == first[0] + 1 and second[0] == first[1] + 1
    store.commit()
    store.close()
    assert all_rows(path) == [
        StoredMessage(first[0], 2, "meter/m1", "t", b"payload-1", 1, 1001.0),
        StoredMessage(first[1], 0, "meter/m1", "t", b"payload-2", 1, 1002.0),
        StoredMessage(second[0], 1, "meter/m1", "t", b"payload-3", 1, 1003.0),
    ]


def test_rows_not_committed_are_gone_after_close(path: str) -> None:
    store = reopened(path)
    store.append([row(1)])
    store.commit()
    store.append([row(2)])
    assert store.in_transaction
    store.close()
    assert [m.payload for m in all_rows(path)] == [b"payload-1"]


def test_append_of_nothing_does_nothing(store: OutboxStore) -> None:
    assert store.append([]) == []
    assert not store.in_transaction


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ((3, "d", "t", b"p", 1, 1.0), "lane must be"),
        ((2, "d", "t", b"p", 5, 1.0), "qos must be"),
        ((2, "d", "t", "not bytes", 1, 1.0), "payload must be bytes"),
        ((2, None, "t", b"p", 1, 1.0), "device and topic must be str"),
    ],
)
def test_a_malformed_row_changes_nothing(store: OutboxStore, bad: Row, message: str) -> None:
    store.append([row(1)])
    before = store.totals()
    with pytest.raises(ValueError, match=message):
        store.append([row(2), bad])
    assert store.totals() == before
    store.commit()
    assert [m.payload for m in store.load(0, 10)] == [b"payload-1"]


def test_load_pages_in_id_order(store: OutboxStore) -> None:
    ids = store.append([row(n, lane=n % 3) for n in range(10)])
    store.commit()
    assert [m.id for m in store.load(0, 4)] == ids[:4]
    assert [m.id for m in store.load(ids[3], 4)] == ids[4:8]
    assert [m.id for m in store.load(ids[7], 100)] == ids[8:]
    assert store.load(ids[-1], 100) == []
    assert store.load(0, 0) == []


def test_oldest_bulk_lists_lane_2_only_oldest_first_with_byte_sizes(store: OutboxStore) -> None:
    ids = store.append(
        [
            row(1, lane=0),
            (2, "meter/a", "top/ü", b"12345", 1, 1.0),
            row(3, lane=1),
            (2, "meter/b", "x", b"", 0, 2.0),
            (2, "meter/c", "y", b"abc", 1, 3.0),
        ]
    )
    assert store.oldest_bulk(2) == [
        (ids[1], "meter/a", 5 + len("top/ü".encode())),
        (ids[3], "meter/b", 1),
    ]
    assert [entry[0] for entry in store.oldest_bulk(10)] == [ids[1], ids[3], ids[4]]
    assert store.oldest_bulk(0) == []


# -- delete and totals -------------------------------------------------------------------------


def test_delete_removes_rows_and_ignores_unknown_ids(path: str) -> None:
    store = reopened(path)
    ids = store.append([row(n) for n in range(5)])
    store.commit()
    store.delete([ids[1], ids[3], 999_999_999])
    store.delete([])
    assert [m.id for m in store.load(0, 10)] == [ids[0], ids[2], ids[4]]
    store.commit()
    store.close()
    assert [m.id for m in all_rows(path)] == [ids[0], ids[2], ids[4]]


def test_totals_follow_appends_and_deletes_and_match_a_recount_at_open(path: str) -> None:
    store = reopened(path)
    ids = store.append([row(n, topic="é" * n) for n in range(20)])
    store.delete(ids[5:12])
    expected = sum(len(f"payload-{n}") + 2 * n for n in range(20) if not 5 <= n < 12)
    assert store.totals() == (13, expected)
    assert store.committed_totals() == (0, 0)
    store.commit()
    assert store.committed_totals() == (13, expected)
    store.delete(ids[:2])
    store.rollback()
    assert store.totals() == (13, expected)
    store.close()
    again = OutboxStore(path)
    report = again.open()
    try:
        assert again.totals() == (report.rows, report.bytes) == (13, expected)
    finally:
        again.close()


# -- ids are never reused ----------------------------------------------------------------------


def test_ids_keep_growing_when_the_table_empties(path: str) -> None:
    store = reopened(path)
    ids = store.append([row(1), row(2)])
    store.commit()
    store.delete(ids)
    store.commit()
    later = store.append([row(3)])
    store.commit()
    store.delete(later)
    store.commit()
    store.close()
    assert later[0] > ids[-1]
    # The table is empty, yet a restart does not hand out an id again.
    store = reopened(path)
    try:
        assert store.append([row(4)])[0] > later[0]
    finally:
        store.close()


def test_ids_stay_unique_across_restarts_after_a_rolled_back_reservation(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_module, "ID_BLOCK", 4)
    store = reopened(path)
    handed_out = store.append([row(1)])
    store.commit()
    handed_out += store.append([row(n) for n in range(6)])  # crosses the reservation
    store.rollback()  # ... and the new reservation is rolled back with the rows
    handed_out += store.append([row(7), row(8)])
    store.commit()
    store.delete(handed_out)
    store.commit()
    store.close()
    store = reopened(path)
    try:
        assert store.append([row(9)])[0] > max(handed_out)
    finally:
        store.close()


# -- files that are not a usable outbox --------------------------------------------------------


def moved_aside_files(path: str) -> list[str]:
    return sorted(name for name in os.listdir(os.path.dirname(path)) if ".corrupt-" in name)


def test_a_garbage_file_is_moved_aside_with_its_wal_and_a_fresh_database_used(path: str) -> None:
    garbage = os.urandom(8192)
    Path(path).write_bytes(garbage)
    Path(path + "-wal").write_bytes(b"old wal")
    store = OutboxStore(path)
    report = store.open()
    try:
        assert report.created and report.reason == "not an SQLite database"
        assert report.moved_aside is not None
        name = os.path.basename(report.moved_aside)
        assert name.startswith("outbox.db.corrupt-") and name.endswith("Z")
        assert len(name) == len("outbox.db.corrupt-20260101T000000Z")
        assert Path(report.moved_aside).read_bytes() == garbage
        assert Path(report.moved_aside + "-wal").read_bytes() == b"old wal"
        assert store.append([row(1)])
        store.commit()
    finally:
        store.close()
    assert [m.payload for m in all_rows(path)] == [b"payload-1"]


def test_a_short_file_is_moved_aside(path: str) -> None:
    Path(path).write_bytes(b"SQLite format 3\x00short")
    store = OutboxStore(path)
    report = store.open()
    store.close()
    assert report.moved_aside is not None and moved_aside_files(path) == [
        os.path.basename(report.moved_aside)
    ]


def filled(path: str, rows: int = 2000) -> None:
    store = reopened(path)
    store.append([row(n, topic="x" * 50) for n in range(rows)])
    store.commit()
    store.close()


def test_a_database_truncated_mid_file_is_moved_aside(path: str) -> None:
    filled(path)
    size = os.path.getsize(path)
    with open(path, "r+b") as file:
        file.truncate(size // 2)
    truncated = digest(path)
    store = OutboxStore(path)
    report = store.open()
    try:
        assert report.moved_aside is not None and "damaged" in (report.reason or "")
        assert digest(report.moved_aside) == truncated
        assert store.totals() == (0, 0)
    finally:
        store.close()


def test_a_database_with_a_damaged_page_is_moved_aside(path: str) -> None:
    filled(path)
    page = store_module.PAGE_SIZE
    with open(path, "r+b") as file:  # scribble over a b-tree page in the middle
        file.seek((os.path.getsize(path) // page // 2) * page)
        file.write(b"\xff" * page)
    store = OutboxStore(path)
    report = store.open()
    store.close()
    assert report.moved_aside is not None and "damaged" in (report.reason or "")


def test_another_programs_database_is_moved_aside_not_used(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE notes (body TEXT)")
    conn.commit()
    conn.close()
    store = OutboxStore(path)
    report = store.open()
    store.close()
    assert report.moved_aside is not None and "another program" in (report.reason or "")
    assert inspect(report.moved_aside, "SELECT count(*) FROM notes") == 0


def test_a_foreign_application_id_is_moved_aside(path: str) -> None:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    store = OutboxStore(path)
    report = store.open()
    store.close()
    assert "application_id 0x4d2" in (report.reason or "")


def test_a_name_already_taken_gets_a_counter(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    fixed = types.SimpleNamespace(strftime=lambda *_: "20260101T000000Z", gmtime=lambda: None)
    monkeypatch.setattr(store_module, "time", fixed)
    names = []
    for _ in range(2):
        Path(path).write_bytes(b"garbage" * 100)
        store = OutboxStore(path)
        names.append(os.path.basename(store.open().moved_aside or ""))
        store.close()
    assert names == ["outbox.db.corrupt-20260101T000000Z", "outbox.db.corrupt-20260101T000000Z-2"]


def test_a_newer_schema_is_refused_and_the_file_left_unchanged(path: str) -> None:
    filled(path, rows=10)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 2")
    conn.close()
    before = digest(path)
    store = OutboxStore(path)
    with pytest.raises(OutboxSchemaError) as raised:
        store.open()
    message = str(raised.value)
    assert "schema version 2" in message and "newer edged" in message
    assert "not changed" in message
    assert digest(path) == before
    assert os.listdir(os.path.dirname(path)) == ["outbox.db"]


def test_a_newer_schema_only_in_the_wal_is_refused_too(path: str) -> None:
    filled(path, rows=10)
    # A newer edged that changed the version and stopped before a checkpoint.
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("PRAGMA user_version = 3")
    wal = Path(path + "-wal").read_bytes()
    copy = Path(path).read_bytes()
    conn.close()  # the checkpoint on close is undone below: keep only the WAL's word
    Path(path).write_bytes(copy)
    Path(path + "-wal").write_bytes(wal)
    store = OutboxStore(path)
    with pytest.raises(OutboxSchemaError, match="schema version 3"):
        store.open()
    assert moved_aside_files(path) == []


# -- paths that cannot be used -----------------------------------------------------------------


def test_a_missing_directory_is_a_path_error(tmp_path: Path) -> None:
    store = OutboxStore(str(tmp_path / "missing" / "outbox.db"))
    with pytest.raises(OutboxPathError, match="does not exist"):
        store.open()


def test_a_directory_at_the_path_is_a_path_error(tmp_path: Path) -> None:
    (tmp_path / "outbox.db").mkdir()
    with pytest.raises(OutboxPathError, match="not a regular file"):
        OutboxStore(str(tmp_path / "outbox.db")).open()


def test_a_file_as_the_directory_is_a_path_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxPathError, match="does not exist"):
        OutboxStore(str(tmp_path / "file" / "outbox.db")).open()


def test_a_database_in_use_is_refused_and_the_user_keeps_it(store: OutboxStore, path: str) -> None:
    with pytest.raises(OutboxPathError, match="in use by another process"):
        OutboxStore(path).open()
    assert store.append([row(1)])
    store.commit()
    assert moved_aside_files(path) == []


def test_methods_of_a_closed_store_raise(path: str) -> None:
    store = reopened(path)
    store.close()
    store.close()
    with pytest.raises(RuntimeError, match="not open"):
        store.load(0, 1)
    opened = reopened(path)
    try:
        with pytest.raises(RuntimeError, match="already open"):
            opened.open()
    finally:
        opened.close()


def test_device_counts_count_rows_per_lane_and_device(store: OutboxStore) -> None:
    ids = store.append(
        [
            row(1, device="a/1"),
            row(2, device="a/1"),
            row(3, lane=0, device="a/1"),
            row(4, device="b/2"),
        ]
    )
    store.delete([ids[1]])
    assert sorted(store.device_counts()) == [(0, "a/1", 1), (2, "a/1", 1), (2, "b/2", 1)]
