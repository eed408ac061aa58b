"""kill -9 of a real process appending through the disk thread loses nothing it was told is saved.

A child (``appender.py``) appends batches and prints the ids of every batch whose future
resolved, and which of its deletes are known committed. It is killed with SIGKILL mid-stream,
three times over the same database; after each kill the database is opened again (recovering
the WAL the dead process left) and checked against what the child printed.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from edged.outbox import OutboxStore, StoredMessage

pytestmark = pytest.mark.integration

APPENDER = Path(__file__).with_name("appender.py")


@dataclass
class Printed:
    """What the child said before it died: committed rows, queued and committed deletes."""

    rows: dict[int, bytes] = field(default_factory=dict)
    queued: set[int] = field(default_factory=set)
    deleted: set[int] = field(default_factory=set)

    def take(self, line: str) -> None:
        kind, _, rest = line.partition(" ")
        if kind == "A":
            for item in rest.split():
                ident, _, payload = item.partition("=")
                self.rows[int(ident)] = payload.encode()
        elif kind == "Q":
            self.queued.update(int(ident) for ident in rest.split())
        elif kind == "D":
            self.deleted.update(int(ident) for ident in rest.split())


def run_and_kill(path: str, tag: str, synchronous: str, lines: int, extra_delay: float) -> Printed:
    """Start the child, read ``lines`` complete ``A`` lines, SIGKILL it mid-stream."""
    child = subprocess.Popen(
        [sys.executable, str(APPENDER), path, tag, synchronous],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[3])},
    )
    assert child.stdout is not None and child.stderr is not None
    printed = Printed()
    buffer = b""
    seen = 0
    deadline = time.monotonic() + 20
    try:
        while seen < lines:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the child printed only {seen} lines"
            ready, _, _ = select.select([child.stdout], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(child.stdout.fileno(), 65536)
            assert chunk, f"the child ended early: {child.stderr.read().decode()}"
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            for line in complete:
                printed.take(line.decode())
                seen += line.startswith(b"A ")
        time.sleep(extra_delay)  # vary where in its cycle the child dies
        child.send_signal(signal.SIGKILL)
        assert child.wait(10) == -signal.SIGKILL
        # Lines written before the kill may still sit in the pipe: complete ones count.
        buffer += child.stdout.read()
        *complete, _ = buffer.split(b"\n")
        for line in complete:
            printed.take(line.decode())
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()
    return printed


def reopen(path: str) -> list[StoredMessage]:
    store = OutboxStore(path)
    report = store.open()
    try:
        assert report.moved_aside is None, report.reason
        return store.load(0, 10_000_000)
    finally:
        store.close()


@pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
def test_every_committed_row_survives_kill_9_and_ids_keep_growing(
    tmp_path: Path, synchronous: str
) -> None:
    path = str(tmp_path / "outbox.db")
    survivors: dict[int, bytes] = {}
    highest_printed = 0
    for round_no, (lines, delay) in enumerate([(40, 0.0), (73, 0.003), (101, 0.011)]):
        tag = f"r{round_no}"
        printed = run_and_kill(path, tag, synchronous, lines, delay)
        rows = {m.id: m.payload for m in reopen(path)}
        kept = {i: p for i, p in printed.rows.items() if i not in printed.queued}
        assert len(kept) >= lines * 5
        # Only the deletes of the last batch can be unconfirmed: they may or may not be done.
        assert len(printed.queued - printed.deleted) <= 5
        missing = sorted(i for i in kept if rows.get(i) != kept[i])
        assert not missing, (
            f"round {round_no}: committed rows lost after kill -9: {missing[:10]}; "
            f"stored there: {sorted(i for i in rows if abs(i - missing[0]) < 30)}; "
            f"printed: {sorted(i for i in printed.rows if abs(i - missing[0]) < 30)}; "
            f"deleted: {sorted(i for i in printed.deleted if abs(i - missing[0]) < 30)}"
        )
        resurrected = printed.deleted & rows.keys()
        assert not resurrected, f"round {round_no}: committed deletes undone: {sorted(resurrected)}"
        # Earlier rounds' survivors are untouched.
        assert {i: rows.get(i) for i in survivors} == survivors
        # Rows the child committed but could not report are the newest ones, in order.
        this_round = sorted((i, p) for i, p in rows.items() if p.startswith(f"{tag}:".encode()))
        seqs = [int(p.split(b":")[1]) for _, p in this_round]
        assert seqs == sorted(seqs)
        unreported = [i for i, _ in this_round if i not in printed.rows]
        assert all(i > max(printed.rows) for i in unreported)
        # Ids never go back, even past rows deleted before the kill.
        assert min(printed.rows) > highest_printed
        highest_printed = max(printed.rows)
        survivors = rows
