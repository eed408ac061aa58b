"""A ReadingSink that records what an adapter emits, with waits bounded by a timeout."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from edged.model import DeviceIdentity, DeviceState, Reading


@dataclass
class RecordingSink:
    """Keeps every reading and state change; :meth:`wait_for` polls a condition."""

    readings: list[Reading] = field(default_factory=list)
    states: list[tuple[DeviceIdentity, DeviceState, str]] = field(default_factory=list)

    async def emit(self, reading: Reading) -> None:
        self.readings.append(reading)

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        self.states.append((device, state, detail))

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
        self, condition: Callable[[], object], what: str, timeout: float = 10.0
    ) -> None:
        """Wait until ``condition()`` is truthy; fail naming ``what`` after ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                while not condition():
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise AssertionError(
                f"no {what} within {timeout:g} s; last states {self.states[-4:]},"
                f" last readings {[dict(r.values) for r in self.readings[-3:]]}"
            ) from None
