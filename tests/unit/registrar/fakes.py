"""A fake clock with timers, and registrars built on it with a real state file in tmp_path."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edged.config.registration import RegistrationConfig
from edged.model import DeviceIdentity
from edged.registrar import Registrar
from edged.statefile import StateFile

GATEWAY = DeviceIdentity("gw", "g1")


@dataclass(eq=False)
class FakeTimer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class FakeTime:
    """Monotonic time that moves only when told; timers fire in due order as it moves."""

    now: float = 1000.0
    _heap: list[tuple[float, int, FakeTimer]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)

    def clock(self) -> float:
        return self.now

    def schedule(self, delay: float, callback: Callable[[], None]) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback)
        heapq.heappush(self._heap, (timer.due, next(self._seq), timer))
        return timer

    def advance(self, seconds: float) -> None:
        target = self.now + seconds
        while self._heap and self._heap[0][0] <= target:
            due, _, timer = heapq.heappop(self._heap)
            if not timer.cancelled:
                self.now = due
                timer.callback()
        self.now = target

    @property
    def live_timers(self) -> int:
        return sum(1 for _, _, timer in self._heap if not timer.cancelled)


@dataclass
class Harness:
    time: FakeTime
    path: Path
    wakes: int = 0
    made: list[Registrar] = field(default_factory=list)

    def wake(self) -> None:
        self.wakes += 1

    def make(self, devices: list[str], **settings: Any) -> Registrar:
        defaults: dict[str, Any] = {
            "confirm_after": 10.0,
            "retry_initial": 60.0,
            "retry_max": 3600.0,
            "limit_backoff": 3600.0,
        }
        registrar = Registrar(
            GATEWAY,
            [DeviceIdentity(*key.split("/")) for key in devices],
            RegistrationConfig(**{**defaults, **settings}),
            StateFile(str(self.path)),
            wake=self.wake,
            clock=self.time.clock,
            wall=lambda: 1_700_000_000.0 + self.time.now,
            rng=random.Random(7),
            schedule=self.time.schedule,
        )
        self.made.append(registrar)
        return registrar

    async def flush(self) -> None:
        """Wait for the state files' background writes (none may outlive a test)."""
        for registrar in self.made:
            await registrar.state_file.flush()
        # StateFile writes in the loop's default executor: its thread must not outlive the test.
        await asyncio.get_running_loop().shutdown_default_executor()


def delivery() -> asyncio.Future[None]:
    return asyncio.get_running_loop().create_future()


async def settle() -> None:
    """Let done-callbacks scheduled with call_soon run."""
    for _ in range(3):
        await asyncio.sleep(0)
