"""Running BLE controllers in tests: builders and a bounded runner.

The recording sink is the shared one (:class:`tests.support.sink.RecordingSink`), re-exported.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from edged.adapters.base import AdapterContext, DeviceSpec
from edged.adapters.ble.adapter import BleController, create_adapters
from edged.adapters.ble.config import DeviceConfig, Settings
from edged.model import DeviceIdentity
from tests.support.sink import RecordingSink

__all__ = ["RecordingSink", "Run", "controller", "controllers", "identity", "run_controller"]


def identity(device_id: str) -> DeviceIdentity:
    """The identity tests give a BLE device."""
    return DeviceIdentity("ble-sensor", device_id)


def controllers(devices: Mapping[str, Mapping[str, Any]], **settings: Any) -> list[BleController]:
    """Runners for ``{device_id: ble-section}`` built the way the daemon builds them."""
    specs = [
        DeviceSpec(
            identity(device_id), DeviceConfig.model_validate(section), "reading", ("devices", i)
        )
        for i, (device_id, section) in enumerate(devices.items())
    ]
    built = create_adapters(
        specs, Settings.model_validate(settings), AdapterContext(identity("gw"))
    )
    return [runner for runner in built if isinstance(runner, BleController)]


def controller(devices: Mapping[str, Mapping[str, Any]], **settings: Any) -> BleController:
    """The single runner for devices that all sit on one controller."""
    [runner] = controllers(devices, **settings)
    return runner


@dataclass
class Run:
    """A runner's task in a test; :meth:`failure` waits for the error the test expects."""

    task: asyncio.Task[None]
    seen: BaseException | None = None

    async def failure(self, within: float = 15.0) -> BaseException:
        """The exception the runner ends with (failing the test if it does not end)."""
        try:
            await asyncio.wait_for(asyncio.shield(self.task), within)
        except Exception as exc:
            self.seen = exc
            return exc
        raise AssertionError("the runner returned without an error")


@asynccontextmanager
async def run_controller(runner: BleController, sink: RecordingSink) -> AsyncIterator[Run]:
    """Run ``runner`` as a task; cancel it on exit and raise any failure the test did not expect."""
    run = Run(asyncio.create_task(runner.run(sink), name=f"test:{runner.name}"))
    try:
        yield run
    finally:
        if not run.task.done():
            run.task.cancel()
        try:
            await run.task
        except asyncio.CancelledError:
            pass
        except Exception as exc:
            if exc is not run.seen:
                raise
