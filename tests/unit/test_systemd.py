"""sd_notify reaches a real datagram socket the way systemd's does."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

from edged.systemd import Notifier


def test_notify_sends_datagrams_to_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        notifier.notify("READY=1", "STATUS=up")
        assert server.recv(1024) == b"READY=1\nSTATUS=up"
        notifier.close()


async def test_watchdog_pings_at_half_the_interval() -> None:
    name = f"edged-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.setblocking(False)
        notifier = Notifier(
            {
                "NOTIFY_SOCKET": "@" + name,
                "WATCHDOG_USEC": "100000",
                "WATCHDOG_PID": str(os.getpid()),
            }
        )
        assert notifier.watchdog_interval == 0.05
        task = asyncio.create_task(notifier.watchdog())
        await asyncio.sleep(0.18)
        task.cancel()
        pings = []
        while True:
            try:
                pings.append(server.recv(64))
            except BlockingIOError:
                break
        assert 3 <= len(pings) <= 5 and set(pings) == {b"WATCHDOG=1"}
        notifier.close()


def test_without_systemd_nothing_happens() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    notifier.notify("READY=1")
    notifier.close()


async def test_watchdog_pings_stop_while_not_alive_and_resume_after() -> None:
    name = f"edged-test-alive-{os.getpid()}"
    alive = [True]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.setblocking(False)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "40000"})
        task = asyncio.create_task(notifier.watchdog(lambda: alive[0]))

        def drain() -> int:
            count = 0
            while True:
                try:
                    server.recv(64)
                except BlockingIOError:
                    return count
                count += 1

        await asyncio.sleep(0.1)
        assert drain() >= 2
        alive[0] = False
        await asyncio.sleep(0.03)
        drain()  # a ping sent just before the switch
        await asyncio.sleep(0.1)
        assert drain() == 0
        alive[0] = True
        await asyncio.sleep(0.1)
        assert drain() >= 2
        task.cancel()
        notifier.close()
