"""Running one serial device runner in a test, recording what it reports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from edged.adapters.base import AdapterContext, DeviceSpec
from edged.adapters.serial.adapter import SerialDevice
from edged.adapters.serial.config import DeviceConfig, ReopenConfig, Settings
from edged.model import DeviceIdentity, DeviceState
from tests.support.sink import RecordingSink

DEVICE = DeviceIdentity("sensor", "s-1")
GATEWAY = DeviceIdentity("gw", "gw-1")
FAST = Settings(reopen=ReopenConfig(initial=0.02, max=0.2))


@contextlib.asynccontextmanager
async def running(
    section: dict[str, Any],
    context: AdapterContext | None = None,
    settings: Settings = FAST,
    **options: Any,
) -> AsyncIterator[tuple[SerialDevice, RecordingSink]]:
    """Run a device until the block ends; fail if its runner died on its own.

    ``options`` go to :class:`SerialDevice` (``link_factory``, ``stable_after``).
    """
    spec = DeviceSpec(DEVICE, DeviceConfig.model_validate(section), "reading", ())
    device = SerialDevice(spec, settings, context or AdapterContext(gateway=GATEWAY), **options)
    sink = RecordingSink()
    task = asyncio.create_task(device.run(sink), name="serial-device-under-test")
    try:
        yield device, sink
        assert not task.done(), f"the runner ended: {task}"
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def online(sink: RecordingSink) -> bool:
    """Whether the device's latest state is online."""
    return state(sink) is DeviceState.ONLINE


def state(sink: RecordingSink) -> DeviceState | None:
    """The device's latest state."""
    latest = sink.state_of(DEVICE)
    return None if latest is None else latest[0]


def detail(sink: RecordingSink) -> str:
    """The detail of the device's latest state."""
    latest = sink.state_of(DEVICE)
    assert latest is not None, "no state reported yet"
    return latest[1]


def transitions(sink: RecordingSink) -> list[DeviceState]:
    """The device's states as the bridge logs them: repeats (a new detail) left out."""
    states: list[DeviceState] = []
    for current in sink.states_of(DEVICE):
        if not states or states[-1] is not current:
            states.append(current)
    return states
