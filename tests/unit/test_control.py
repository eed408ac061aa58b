"""The control socket: answers, refusals, and clients that misbehave never stall the daemon."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from edged import control
from edged.control import ControlServer, NotRunning, request


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[ControlServer]:
    calls: list[str] = []

    async def slow() -> dict[str, Any]:
        await asyncio.sleep(0)
        calls.append("slow")
        return {"slow": True}

    def broken() -> None:
        raise ValueError("on purpose")

    instance = ControlServer(
        str(tmp_path / "c.sock"), {"status": lambda: {"up": 1}, "slow": slow, "broken": broken}
    )
    assert await instance.start()
    yield instance
    await instance.close()


async def _ask(path: str, raw: bytes) -> dict[str, Any]:
    reader, writer = await asyncio.open_unix_connection(path)
    writer.write(raw)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    answer: dict[str, Any] = orjson.loads(line)
    return answer


async def test_commands_are_answered_and_the_socket_is_group_only(server: ControlServer) -> None:
    assert await _ask(server.path, b'{"cmd": "status"}\n') == {"ok": True, "data": {"up": 1}}
    assert await _ask(server.path, b'{"cmd": "slow"}\n') == {"ok": True, "data": {"slow": True}}
    assert os.stat(server.path).st_mode & 0o777 == 0o660


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"garbage\n", "not JSON"),
        (b'{"cmd": "reboot"}\n', "unknown command"),
        (b"[1]\n", "unknown command"),
        (b'{"cmd": "broken"}\n', "broken failed: on purpose"),
        (b"x" * 10_000 + b"\n", "longer than"),
    ],
)
async def test_bad_requests_get_an_error(server: ControlServer, raw: bytes, says: str) -> None:
    answer = await _ask(server.path, raw)
    assert answer["ok"] is False and says in answer["error"]


async def test_stalled_and_flooding_clients_do_not_stop_others(
    server: ControlServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(control, "READ_TIMEOUT", 0.2)
    stalled = [await asyncio.open_unix_connection(server.path) for _ in range(control.MAX_CLIENTS)]
    busy = await _ask(server.path, b'{"cmd": "status"}\n')
    assert busy == {"ok": False, "error": "busy; try again"}
    await asyncio.sleep(0.4)  # the stalled ones are cut off after READ_TIMEOUT
    assert await _ask(server.path, b'{"cmd": "status"}\n') == {"ok": True, "data": {"up": 1}}
    for reader, writer in stalled:
        assert await reader.read() == b""  # closed by the server
        writer.close()
    assert server.counters["busy"] == 1


async def test_a_stale_socket_file_is_replaced_and_a_live_one_is_not_stolen(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.sock"
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))
    stale.close()  # the file stays, nobody listens
    first = ControlServer(str(path), {"status": lambda: 1})
    assert await first.start()
    second = ControlServer(str(path), {"status": lambda: 2})
    assert not await second.start()
    assert await asyncio.to_thread(request, str(path), "status") == 1
    await first.close()
    assert not path.exists()
    await asyncio.get_running_loop().shutdown_default_executor()


def test_the_client_says_when_nothing_runs(tmp_path: Path) -> None:
    with pytest.raises(NotRunning, match="not running"):
        request(str(tmp_path / "none.sock"), "status")
