"""StateFile on real files in tmp_path: round trip, corrupt files moved aside, atomic replace."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edged import statefile
from edged.statefile import StateFile, sibling_path


@pytest.fixture
async def _executor_joined() -> AsyncIterator[None]:
    yield
    # save() writes in the loop's default executor: its thread must not outlive the test.
    await asyncio.get_running_loop().shutdown_default_executor()


def test_a_missing_file_is_an_empty_document(tmp_path: Path) -> None:
    assert StateFile(str(tmp_path / "none.json")).load() == {}


@pytest.mark.usefixtures("_executor_joined")
async def test_saved_documents_are_loaded_back(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.json"  # the directory is created
    state = StateFile(str(path))
    for n in range(20):  # a burst: the last one wins
        state.save({"n": n, "names": ["a", "é"]})
    await state.flush()
    assert StateFile(str(path)).load() == {"n": 19, "names": ["a", "é"]}
    assert not (tmp_path / "sub" / "state.json.tmp").exists()


def test_save_now_writes_at_once(tmp_path: Path) -> None:
    state = StateFile(str(tmp_path / "s.json"))
    state.save_now({"a": 1})
    assert StateFile(state.path).load() == {"a": 1}


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe"])
def test_a_corrupt_file_is_moved_aside(
    tmp_path: Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.json"
    path.write_bytes(content)
    assert StateFile(str(path)).load() == {}
    assert not path.exists()
    assert (tmp_path / "s.json.corrupt").read_bytes() == content
    assert "corrupt" in caplog.text


def test_a_file_over_the_limit_is_corrupt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(statefile, "MAX_STATE_BYTES", 10)
    path = tmp_path / "s.json"
    path.write_bytes(b'{"a": "0123456789"}')
    assert StateFile(str(path)).load() == {}
    assert (tmp_path / "s.json.corrupt").exists()


def test_a_failed_write_leaves_the_old_document(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = StateFile(str(tmp_path / "s.json"))
    state.save_now({"old": True})
    real_replace = os.replace

    def power_cut(src: str, dst: str) -> None:
        raise OSError("power cut before the rename")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        state.save_now({"new": True})
    monkeypatch.setattr(os, "replace", real_replace)
    assert StateFile(state.path).load() == {"old": True}  # never a mix


@pytest.mark.usefixtures("_executor_joined")
async def test_a_failed_background_write_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    state = StateFile(str(blocker / "s.json"))  # its directory is a file: cannot be created
    state.save({"a": 1})
    await state.flush()
    assert state.failures == 1
    assert "cannot write" in caplog.text


def test_sibling_path(tmp_path: Path) -> None:
    assert sibling_path(str(tmp_path / "outbox.sqlite"), "registered.json") == str(
        tmp_path / "registered.json"
    )
