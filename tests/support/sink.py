"""One recording :class:`~edged.adapters.base.ReadingSink` for every adapter's tests."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from edged.model import DeviceIdentity, DeviceState, Reading


class RecordingSink:
    """Keeps every reading and state change; :meth:`wait_for` waits for a condition.

    ``gate``: set it to a cleared :class:`asyncio.Event` to make ``emit`` block (backpressure).
    """

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.states: list[tuple[DeviceIdentity, DeviceState, str]] = []
        self.gate: asyncio.Event | None = None
        self._changed = asyncio.Event()

    async def emit(self, reading: Reading) -> None:
        if self.gate is not None:
            await self.gate.wait()
        self.readings.append(reading)
        self._changed.set()

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        self.states.append((device, state, detail))
        self._changed.set()

    @property
    def state(self) -> DeviceState | None:
        """The last state reported for any device."""
        return self.states[-1][1] if self.states else None

    def of(self, device: DeviceIdentity | str) -> list[Reading]:
        """The readings of one device (an identity or a device id)."""
        return [r for r in self.readings if _matches(r.device, device)]

    def state_of(self, device: DeviceIdentity | str) -> tuple[DeviceState, str] | None:
        """The latest state and detail reported for one device."""
        for who, state, detail in reversed(self.states):
            if _matches(who, device):
                return state, detail
        return None

    def states_of(self, device: DeviceIdentity | str) -> list[DeviceState]:
        """Every state reported for one device, oldest first."""
        return [state for who, state, _ in self.states if _matches(who, device)]

    def values(self, event: str | None = None) -> list[dict[str, object]]:
        """The values of the recorded readings (of one event), oldest first."""
        return [dict(r.values) for r in self.readings if event is None or r.event == event]

    def values_of(self, device: DeviceIdentity | str) -> list[dict[str, object]]:
        """The values of every reading of one device, oldest first."""
        return [dict(r.values) for r in self.of(device)]

    async def wait_for(
        self, condition: Callable[[], object], what: str = "condition", within: float = 5.0
    ) -> None:
        """Wait until ``condition()`` is truthy; fail naming ``what`` after ``within`` seconds.

        Re-checks on every reading or state change, and at least every 10 ms for conditions
        that look at something else (an adapter's counters, a mock's state).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not condition():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{what} not reached within {within:g} s")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 0.01))


def _matches(who: DeviceIdentity, device: DeviceIdentity | str) -> bool:
    return who == device if isinstance(device, DeviceIdentity) else who.device_id == device
