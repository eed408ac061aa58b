"""Running BLE controllers in tests: a recording sink, builders, and a bounded runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

from edged.adapters.base import AdapterContext, DeviceSpec
from edged.adapters.ble.adapter import BleController, create_adapters
from edged.adapters.ble.config import DeviceConfig, Settings
from edged.model import DeviceIdentity, DeviceState, Reading


@dataclass
class RecordingSink:
    """Keeps every reading and state change; :meth:`wait_for` waits for a condition."""

    readings: list[Reading] = field(default_factory=list)
    states: list[tuple[DeviceIdentity, DeviceState, str]] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def emit(self, reading: Reading) -> None:
        self.readings.append(reading)
        self._changed.set()

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        self.states.append((device, state, detail))
        self._changed.set()

    def state_of(self, device: DeviceIdentity) -> tuple[DeviceState, str] | None:
        """The latest state reported for ``device``."""
        for who, state, detail in reversed(self.states):
            if who == device:
                return state, detail
        return None

    def values_of(self, device: DeviceIdentity) -> list[dict[str, object]]:
        """The values of every reading of ``device``, oldest first."""
        return [dict(r.values) for r in self.readings if r.device == device]

    async def wait_for(
        self, condition: Callable[[], object], what: str, within: float = 10.0
    ) -> None:
        """Wait until ``condition()`` is truthy; fail naming ``what`` after ``within`` seconds.

        Re-checks on every reading or state change, and at least every 50 ms for conditions
        that depend on something else (the mock, the runner's counters).
        """
        try:
            async with asyncio.timeout(within):
                while not condition():
                    self._changed.clear()
                    with suppress(TimeoutError):
                        async with asyncio.timeout(0.05):
                            await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"no {what} within {within:g} s; last states {self.states[-4:]},"
                f" last readings {[dict(r.values) for r in self.readings[-3:]]}"
            ) from None


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
