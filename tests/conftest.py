"""Shared fixtures: a real Mosquitto broker per test, a leak check after every test."""

from __future__ import annotations

import asyncio
import inspect
import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from edged.emulator import PlatformEmulator
from tests.support.broker import APP_USER, Broker, TestCA
from tests.support.daemon import ORG

# Fuzz suites run the same examples every time (CI stays reproducible) and keep no database.
settings.register_profile("edged", derandomize=True, database=None, deadline=None)
settings.load_profile("edged")


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    """A CA and server certificate shared by every broker in the session."""
    return TestCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def broker(tmp_path: Path, test_ca: TestCA) -> Iterator[Broker]:
    """A fresh mosquitto on free loopback ports (plain and TLS), stopped after the test."""
    instance = Broker(workdir=tmp_path / "broker", ca=test_ca)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


def _children() -> set[int]:
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        try:
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        except OSError:
            continue
    return pids


def _fds() -> set[int]:
    return {int(name) for name in os.listdir("/proc/self/fd")}


@pytest.fixture
async def _task_leak_check() -> AsyncIterator[None]:
    """Runs inside a coroutine test's loop: no task the test started may still be running."""
    before = asyncio.all_tasks()
    yield
    await asyncio.sleep(0)  # let tasks cancelled during teardown finish
    current = asyncio.current_task()
    leaked = [t for t in asyncio.all_tasks() - before if t is not current and not t.done()]
    for task in leaked:
        task.cancel()
    if leaked:
        pytest.fail(f"leak check: asyncio tasks left running: {[t.get_name() for t in leaked]}")


@pytest.fixture(autouse=True)
def leak_check(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves threads, child processes, file descriptors or tasks behind."""
    if inspect.iscoroutinefunction(getattr(request, "function", None)):
        request.getfixturevalue("_task_leak_check")
    threads = set(threading.enumerate())
    children = _children()
    fds = _fds()
    yield
    leaked_threads = [t for t in threading.enumerate() if t not in threads and t.is_alive()]
    leaked_children = _children() - children
    # A closed fd number can be reused; only count growth.
    leaked_fds = len(_fds()) - len(fds)
    problems = []
    if leaked_threads:
        problems.append(f"threads left running: {[t.name for t in leaked_threads]}")
    if leaked_children:
        problems.append(f"child processes left running: {sorted(leaked_children)}")
    if leaked_fds > 0:
        problems.append(f"{leaked_fds} file descriptors left open")
    if problems:
        pytest.fail("leak check: " + "; ".join(problems))


@pytest.fixture
def emulator(broker: Broker) -> Iterator[PlatformEmulator]:
    """The platform emulator connected to ``broker`` as the application user."""
    instance = PlatformEmulator(
        broker.host, broker.port, ORG, username=APP_USER, password=broker.app_password
    )
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()
