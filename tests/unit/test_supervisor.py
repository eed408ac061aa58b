"""The supervisor restarts failing adapters with backoff and logs only state transitions."""

from __future__ import annotations

import asyncio
import logging

import pytest

from edged.adapters.base import Adapter, ReadingSink
from edged.backoff import Backoff
from edged.errors import PermanentAdapterError, TransientAdapterError
from edged.model import DeviceIdentity, DeviceState, Reading
from edged.supervisor import Supervisor

DEV = DeviceIdentity("t", "d")


class RecordingSink:
    def __init__(self) -> None:
        self.states: list[DeviceState] = []

    async def emit(self, reading: Reading) -> None:
        return None

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        self.states.append(state)


class Flaky(Adapter):
    def __init__(self, failures: list[Exception]) -> None:
        super().__init__("flaky", [DEV])
        self.failures = failures
        self.runs = 0
        self.settled = asyncio.Event()

    async def run(self, sink: ReadingSink) -> None:
        self.runs += 1
        if self.failures:
            raise self.failures.pop(0)
        sink.set_state(DEV, DeviceState.ONLINE)
        self.settled.set()
        await asyncio.Event().wait()


async def test_restarts_after_failures_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="edged.supervisor")
    adapter = Flaky(
        [
            TransientAdapterError("port vanished"),
            TransientAdapterError("port vanished"),
            ValueError("bug"),
        ]
    )
    sink = RecordingSink()
    supervisor = Supervisor(
        [adapter],
        sink,
        backoff_factory=lambda: Backoff(initial=0.01, maximum=0.05),
        healthy_after=0.2,
    )
    task = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(adapter.settled.wait(), 5)
    assert adapter.runs == 4
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "port vanished" in errors[0].getMessage()
    assert DeviceState.DOWN in sink.states and sink.states[-1] == DeviceState.ONLINE
    health = supervisor.health["flaky"]
    assert (
        health.restarts == 3 and health.failing and "ValueError: bug" in (health.last_error or "")
    )
    await asyncio.sleep(0.3)
    assert not supervisor.health["flaky"].failing
    assert any("recovered" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_permanent_errors_use_the_slow_backoff() -> None:
    adapter = Flaky([PermanentAdapterError("no such library")])
    supervisor = Supervisor(
        [adapter],
        RecordingSink(),
        backoff_factory=lambda: Backoff(initial=5, maximum=5),
        permanent_backoff_factory=lambda: Backoff(initial=0.01, maximum=0.01),
    )
    task = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(
        adapter.settled.wait(), 2
    )  # would take 5 s with the fast (transient) backoff
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
