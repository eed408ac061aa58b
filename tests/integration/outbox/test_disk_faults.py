"""The outbox on real small and read-only file systems (tmpfs mounts): full disk, read-only.

Needs the right to mount (root or CAP_SYS_ADMIN); without it these tests are skipped and say so.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edged.outbox import DiskThread, OutboxDiskFull, OutboxPathError, OutboxStore
from edged.outbox.store import Row

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def tmpfs(directory: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``directory`` for the duration."""
    directory.mkdir()
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=True)


def remount(directory: Path, option: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{option}", str(directory)], check=True)


def fill(directory: Path, leave: int = 0) -> Path:
    """Write a filler file until the file system is full (or only ``leave`` bytes are free)."""
    filler = directory / "filler"
    with open(filler, "wb", buffering=0) as file:
        if leave:
            free = os.statvfs(directory).f_bavail * os.statvfs(directory).f_frsize
            file.write(b"\0" * max(0, free - leave))
            return filler
        with contextlib.suppress(OSError):
            while True:
                file.write(b"\0" * 4096)
        with contextlib.suppress(OSError):
            while True:
                file.write(b"\0")
    return filler


def big(n: int, size: int = 30_000) -> Row:
    payload = bytes([n % 256]) * size
    return (2, f"meter/m{n % 3}", "iot-2/evt/reading/fmt/json", payload, 1, float(n))


async def test_a_full_disk_fails_the_appends_and_the_thread_recovers_when_space_returns(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "fs", "1m") as fs:
        filler = fill(fs, leave=700_000)
        disk = DiskThread(OutboxStore(str(fs / "outbox.db")), commit_interval=0.01)
        disk.start()
        try:
            saved: list[int] = []
            for n in range(100):
                try:
                    saved += await disk.append([big(n)])
                except OutboxDiskFull as exc:
                    full = str(exc)
                    break
            else:
                pytest.fail("the disk never filled up")
            assert "file system is full" in full
            # Deletes queued while the disk is full are kept and done once it has room.
            disk.delete(saved[:3])
            with pytest.raises(OutboxDiskFull):
                await disk.append([big(1000, size=200_000)])
            filler.unlink()
            later = await disk.append([big(2000)])
            stored = await disk.load(0, 1000)
            assert [m.id for m in stored] == saved[3:] + later
            assert stored[-1].payload == big(2000)[3]
            assert disk.commit_failures >= 2
        finally:
            await disk.close()
        store = OutboxStore(str(fs / "outbox.db"))
        store.open()
        try:
            assert [m.id for m in store.load(0, 1000)] == saved[3:] + later
        finally:
            store.close()


async def test_a_wal_that_meets_a_full_disk_is_checkpointed_and_reused(tmp_path: Path) -> None:
    # The database file already has room (pages freed by acknowledged messages); the WAL grows
    # until the disk is full. Checkpointing then needs no new space, and the WAL is written from
    # its start again: the flow goes on although nobody freed anything.
    with tmpfs(tmp_path / "fs", "1m") as fs:
        path = str(fs / "outbox.db")
        store = OutboxStore(path)
        store.open()
        store.delete(store.append([big(n, size=20_000) for n in range(15)]))
        store.commit()
        assert store.checkpoint()
        store.close()
        fill(fs, leave=200_000)  # less than the ~1 MiB of WAL SQLite lets grow by itself
        disk = DiskThread(OutboxStore(path), commit_interval=0.001)
        disk.start()
        failures = 0
        try:
            for n in range(60):  # 60 x 20 kB through the WAL: far more than is free
                for _ in range(2):  # the caller keeps a failed message and appends it again
                    try:
                        ids = await disk.append([big(n, size=20_000)])
                    except OutboxDiskFull:
                        failures += 1
                        continue
                    disk.delete(ids)
                    break
                else:
                    pytest.fail(f"message {n} failed twice in a row: the outbox is stuck")
            # Acknowledged messages are gone; the last delete may still wait for room.
            assert [m.created for m in await disk.load(0, 100)] in ([], [59.0])
        finally:
            await disk.close()
        assert failures >= 1  # the disk did fill, and each time the next try succeeded


def test_a_new_database_on_a_full_disk_is_an_error_and_nothing_is_moved(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "256k") as fs:
        fill(fs)
        with pytest.raises(OutboxDiskFull, match="file system is full"):
            OutboxStore(str(fs / "outbox.db")).open()
        assert not [name for name in os.listdir(fs) if "corrupt" in name]


def test_a_read_only_file_system_is_a_path_error(tmp_path: Path) -> None:
    with (
        tmpfs(tmp_path / "fs", "1m", read_only=True) as fs,
        pytest.raises(OutboxPathError, match="not writable"),
    ):
        OutboxStore(str(fs / "outbox.db")).open()


def test_a_good_database_on_a_file_system_gone_read_only_is_a_path_error_not_moved(
    tmp_path: Path,
) -> None:
    with tmpfs(tmp_path / "fs", "1m") as fs:
        path = str(fs / "outbox.db")
        store = OutboxStore(path)
        store.open()
        store.append([big(1, size=100)])
        store.commit()
        store.close()
        before = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        remount(fs, "ro")
        try:
            with pytest.raises(OutboxPathError, match="not writable"):
                OutboxStore(path).open()
            assert os.listdir(fs) == ["outbox.db"]
            assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == before
        finally:
            remount(fs, "rw")


async def test_a_disk_thread_on_an_unusable_path_fails_to_start_cleanly(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "fs", "1m", read_only=True) as fs:
        disk = DiskThread(OutboxStore(str(fs / "outbox.db")))
        with pytest.raises(OutboxPathError):
            disk.start()
        await disk.close()
        await asyncio.sleep(0)
