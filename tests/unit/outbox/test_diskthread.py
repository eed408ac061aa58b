"""DiskThread with a real OutboxStore in tmp_path: batching, ordering, closing, never blocking."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

import edged.outbox.diskthread as diskthread_module
from edged.outbox.diskthread import DiskThread
from edged.outbox.store import OutboxIOError, OutboxSchemaError, OutboxStore, Row


def row(n: int, lane: int = 2) -> Row:
    return (lane, f"meter/m{n % 3}", "iot-2/evt/reading/fmt/json", b"%d" % n, 1, float(n))


class RecordingStore(OutboxStore):
    """The real store, noting which ids each successful commit made durable."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.batches: list[list[int]] = []
        self._uncommitted: list[int] = []

    def append(self, rows: Sequence[Row]) -> list[int]:
        ids = super().append(rows)
        self._uncommitted += ids
        return ids

    def commit(self) -> None:
        super().commit()
        if self._uncommitted:
            self.batches.append(self._uncommitted)
            self._uncommitted = []


def stored(path: str) -> list[bytes]:
    store = OutboxStore(path)
    store.open()
    try:
        return [m.payload for m in store.load(0, 1_000_000)]
    finally:
        store.close()


@pytest.fixture
def path(tmp_path: Path) -> str:
    return str(tmp_path / "outbox.db")


async def test_an_append_resolves_only_once_its_rows_are_committed(path: str) -> None:
    store = RecordingStore(path)
    disk = DiskThread(store, commit_interval=0.05)
    report = disk.start()
    assert report.created
    try:
        for n in range(5):
            ids = await disk.append([row(n), row(n + 100)])
            committed = {i for batch in store.batches for i in batch}
            assert set(ids) <= committed
    finally:
        await disk.close()
    assert len(stored(path)) == 10


async def test_appends_within_the_interval_share_one_commit(path: str) -> None:
    store = RecordingStore(path)
    disk = DiskThread(store, commit_interval=0.5, commit_batch=1000)
    disk.start()
    try:
        results = await asyncio.gather(*(disk.append([row(n)]) for n in range(20)))
        assert store.batches == [[ids[0] for ids in results]]
        assert disk.commits == 1
    finally:
        await disk.close()


async def test_commit_batch_rows_commit_without_waiting_for_the_interval(path: str) -> None:
    store = RecordingStore(path)
    disk = DiskThread(store, commit_interval=3600, commit_batch=5)
    disk.start()
    try:
        await asyncio.wait_for(asyncio.gather(*(disk.append([row(n)]) for n in range(5))), 10)
        late = disk.append([row(5)])
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.shield(late), 0.2)
    finally:
        await disk.close()  # commits the last one
    assert await late and len(store.batches) == 2


async def test_deletes_are_committed_with_the_next_batch(path: str) -> None:
    disk = DiskThread(OutboxStore(path), commit_interval=0.01)
    disk.start()
    try:
        ids = await disk.append([row(n) for n in range(6)])
        disk.delete(ids[::2])
        disk.delete([])
        assert [m.id for m in await disk.load(0, 100)] == ids[1::2]
        assert disk.totals == (3, 3 * (1 + len(row(0)[2])))
    finally:
        await disk.close()
    assert stored(path) == [b"1", b"3", b"5"]


async def test_a_load_sees_every_append_before_it_and_their_ids_arrive_first(path: str) -> None:
    disk = DiskThread(OutboxStore(path), commit_interval=3600)
    disk.start()
    try:
        pending = [disk.append([row(n)]) for n in range(3)]
        loaded = await disk.load(0, 10)
        assert all(future.done() for future in pending)
        assert [m.id for m in loaded] == [future.result()[0] for future in pending]
        bulk = disk.append([row(9, lane=2), row(10, lane=0)])
        assert await disk.oldest_bulk(10) == [
            (m.id, m.device, len(m.payload) + len(m.topic)) for m in loaded
        ] + [((await bulk)[0], "meter/m0", 1 + len(row(9)[2]))]
    finally:
        await disk.close()


async def test_a_malformed_row_fails_its_own_append_only(path: str) -> None:
    disk = DiskThread(OutboxStore(path), commit_interval=0.05)
    disk.start()
    try:
        good = disk.append([row(1)])
        bad = disk.append([(7, "d", "t", b"p", 1, 0.0)])
        other = disk.append([row(2)])
        with pytest.raises(ValueError, match="lane must be"):
            await bad
        assert len(await good) == len(await other) == 1
    finally:
        await disk.close()
    assert stored(path) == [b"1", b"2"]


async def test_a_cancelled_append_is_still_written(path: str) -> None:
    disk = DiskThread(OutboxStore(path), commit_interval=0.05)
    disk.start()
    try:
        disk.append([row(1)]).cancel()
        await disk.append([row(2)])
    finally:
        await disk.close()
    assert stored(path) == [b"1", b"2"]


async def test_close_commits_what_is_queued_and_ends_the_thread(path: str) -> None:
    disk = DiskThread(OutboxStore(path), commit_interval=3600, commit_batch=1)
    disk.start()
    first = await disk.append([row(0)])
    disk.commit_batch = 1000
    pending = disk.append([row(1), row(2)])
    disk.delete(first)
    await disk.close()
    assert pending.done() and len(pending.result()) == 2
    assert not any(t.name == "edged-outbox-disk" for t in threading.enumerate())
    await disk.close()
    with pytest.raises(RuntimeError, match="not running"):
        disk.append([row(3)])
    with pytest.raises(RuntimeError, match="not running"):
        disk.delete([1])
    assert stored(path) == [b"1", b"2"]


async def test_a_start_that_fails_raises_and_leaves_no_thread(path: str) -> None:
    store = OutboxStore(path)
    store.open()
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 9")
    conn.close()
    disk = DiskThread(OutboxStore(path))
    with pytest.raises(OutboxSchemaError):
        disk.start()
    await disk.close()
    with pytest.raises(RuntimeError, match="not running"):
        disk.load(0, 1)


class GatedStore(OutboxStore):
    """The real store whose commits wait for a gate: a disk that takes its time."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gave_up = False

    def commit(self) -> None:
        if self.in_transaction and not self.gate.wait(10):
            self.gave_up = True
        super().commit()


async def test_the_loop_keeps_running_while_the_disk_is_slow(path: str) -> None:
    store = GatedStore(path)
    disk = DiskThread(store, commit_interval=0)
    disk.start()
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.005)
            ticks += 1
            if ticks == 20:  # the loop ran 20 timers while the commit was stuck
                store.gate.set()

    task = asyncio.create_task(ticker())
    try:
        ids = await asyncio.wait_for(disk.append([row(1)]), 15)
        assert ids and ticks >= 20 and not store.gave_up
    finally:
        task.cancel()
        store.gate.set()
        await disk.close()


async def test_close_gives_up_on_a_hung_disk_and_fails_what_waits(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(diskthread_module, "CLOSE_TIMEOUT", 0.2)
    store = GatedStore(path)
    disk = DiskThread(store, commit_interval=0)
    disk.start()
    thread = next(t for t in threading.enumerate() if t.name == "edged-outbox-disk")
    stuck = disk.append([row(1)])
    try:
        await disk.close()
        with pytest.raises(OutboxIOError, match="did not finish in time"):
            await stuck
    finally:
        store.gate.set()
        thread.join(10)
    assert not thread.is_alive()
