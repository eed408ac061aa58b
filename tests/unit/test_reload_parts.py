"""The pieces a reload uses: runners stopped and started under the supervisor, commands held
while a device changes runner, the router's device set."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edged.adapters.base import Adapter, ReadingSink
from edged.bridge import Bridge
from edged.model import Command, DeviceIdentity, DeviceState, JSONValue, Reading
from edged.outbox import Outbox
from edged.router import Router
from edged.supervisor import Supervisor
from tests.support.outbox import open_outbox

GW = DeviceIdentity("gw", "g1")
A = DeviceIdentity("t", "a")


class Sink:
    async def emit(self, reading: Reading) -> None:
        return None

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        return None


class Runner(Adapter):
    def __init__(self, name: str, *, stubborn: bool = False) -> None:
        super().__init__(name, [A])
        self.running = asyncio.Event()
        self.stubborn = stubborn
        self.release = asyncio.Event()
        self.executed: list[str] = []

    async def run(self, sink: ReadingSink) -> None:
        self.running.set()
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                if not self.stubborn:
                    raise
                self.stubborn = False  # gives in to the second cancellation

    async def execute(self, command: Command) -> dict[str, JSONValue]:
        self.executed.append(command.name)
        if command.name == "slow":
            await self.release.wait()
        return {"by": self.name}


async def test_runners_are_stopped_and_started_while_the_supervisor_runs() -> None:
    old, stubborn = Runner("old"), Runner("stubborn", stubborn=True)
    supervisor = Supervisor([old, stubborn], Sink())
    task = asyncio.create_task(supervisor.run())
    await asyncio.wait_for(asyncio.gather(old.running.wait(), stubborn.running.wait()), 5)
    assert await supervisor.stop([old], timeout=1.0) == []
    assert await supervisor.stop([stubborn], timeout=0.05) == ["adapter:stubborn"]
    assert supervisor.adapters == [] and supervisor.health == {}
    new = Runner("new")
    supervisor.start([new])  # the supervisor runs on with no runner at all in between
    await asyncio.wait_for(new.running.wait(), 5)
    assert [a.name for a in supervisor.adapters] == ["new"] and "new" in supervisor.health
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    async with open_outbox(tmp_path) as box:
        yield box


def _command(name: str) -> Command:
    return Command(A, name, "json", b"{}")


async def test_a_running_command_finishes_and_a_waiting_one_goes_to_the_new_runner(
    outbox: Outbox,
) -> None:
    old, new = Runner("old"), Runner("new")
    bridge = Bridge(GW, [old], outbox)
    slow = asyncio.create_task(bridge.execute(_command("slow")))
    await asyncio.sleep(0)
    assert old.executed == ["slow"]
    entered = asyncio.Event()

    async def swap() -> None:
        async with bridge.holding([A], wait_at_most=5):
            entered.set()
            bridge.detach([A], forget=False)
            bridge.attach([new])

    swapping = asyncio.create_task(swap())
    await asyncio.sleep(0.01)
    assert not entered.is_set()  # waits for the running command
    later = asyncio.create_task(bridge.execute(_command("later")))
    old.release.set()
    assert await asyncio.wait_for(slow, 5) == {"by": "old"}
    await asyncio.wait_for(swapping, 5)
    assert await asyncio.wait_for(later, 5) == {"by": "new"}
    assert bridge.states[A].state is DeviceState.STARTING


def test_the_router_follows_the_device_set() -> None:
    router = Router(
        GW,
        [A],
        commands=lambda topic, payload: None,
        refuse_unnamed=lambda topic: None,
        notify=lambda payload: None,
    )
    router.set_devices([DeviceIdentity("other", "x")])
    filters = [f for f, _ in router.subscriptions()]
    assert "iot-2/type/other/id/+/cmd/+/fmt/+" in filters
    assert "iot-2/type/t/id/+/cmd/+/fmt/+" not in filters
