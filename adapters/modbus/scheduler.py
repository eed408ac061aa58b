"""The bus scheduler: the single owner of one line, taking turns between its devices.

Each turn runs exactly one transaction. Pending writes (commands) go first; otherwise the next
device in round-robin order that has reads left in its cycle gets one read. So a device with
twenty blocks cannot starve one with a single block, and a silent device holds the line for at
most one timeout per turn (and, quarantined, for one probe per backoff period).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from edged.adapters.base import ReadingSink
from edged.adapters.modbus.commands import WritePlan
from edged.adapters.modbus.device import DevicePoller
from edged.adapters.modbus.link import (
    BadResponseError,
    LineDownError,
    Link,
    NoResponseError,
    RefusedError,
)
from edged.errors import CommandFailed


def raise_if_cancelled() -> None:
    """Honour a cancellation that a library swallowed.

    Python 3.11's ``asyncio.wait_for`` (which pymodbus uses for every request) returns the
    result instead of raising when the cancellation arrives just as the answer does; the
    request stays counted in ``Task.cancelling()``, so the runner checks it each turn.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


@dataclass
class _WriteJob:
    device: DevicePoller
    plan: WritePlan
    future: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class BusScheduler:
    """Runs the cycles of ``devices`` over one :class:`~.link.Link` and serves their writes."""

    def __init__(
        self,
        devices: Sequence[DevicePoller],
        retries: int,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.devices = list(devices)
        self.retries = retries
        self._clock = clock
        self._wall_clock = wall_clock
        self._writes: deque[_WriteJob] = deque()
        self._wake = asyncio.Event()
        self._turn = 0
        self._link: Link | None = None

    async def serve(self, link: Link, sink: ReadingSink) -> NoReturn:
        """Poll and write over ``link`` until it goes down (:class:`LineDownError` propagates)."""
        self._link = link
        try:
            while True:
                raise_if_cancelled()
                if self._writes:
                    await self._write(link, self._writes.popleft())
                    continue
                now = self._clock()
                for device in self.devices:
                    if device.due(now):
                        device.start_cycle(now)
                    if device.in_cycle and not device.busy:
                        await self._finish(device, sink)
                turn = self._next_busy()
                if turn is None:
                    await self._idle(now)
                    continue
                await turn.step(link)
                if not turn.busy:
                    await self._finish(turn, sink)
        finally:
            self._link = None
            for device in self.devices:
                device.abandon_cycle()
            while self._writes:
                job = self._writes.popleft()
                if not job.future.done():
                    job.future.set_exception(CommandFailed(f"the line went down: {link.url}"))

    async def submit(self, device: DevicePoller, plan: WritePlan) -> dict[str, Any]:
        """Queue a write for the next turn and wait for its outcome."""
        link = self._link
        if link is None or not link.connected:
            raise CommandFailed(f"{device.label}: the line is not connected")
        job = _WriteJob(device, plan)
        self._writes.append(job)
        self._wake.set()
        return await job.future

    async def _finish(self, device: DevicePoller, sink: ReadingSink) -> None:
        reading = device.finish_cycle(self._wall_clock())
        if reading is not None:
            await sink.emit(reading)

    def _next_busy(self) -> DevicePoller | None:
        count = len(self.devices)
        for step in range(count):
            index = (self._turn + step) % count
            device = self.devices[index]
            if device.busy:
                self._turn = (index + 1) % count
                return device
        return None

    async def _idle(self, now: float) -> None:
        dues = [device.next_due for device in self.devices if device.points]
        self._wake.clear()
        delay = max(0.0, min(dues) - now) if dues else None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(delay):
                await self._wake.wait()

    async def _write(self, link: Link, job: _WriteJob) -> None:
        if job.future.done():  # the caller gave up meanwhile
            return
        device, plan = job.device, job.plan
        attempts = 1 + self.retries if device.answering is not False else 1
        for attempt in range(attempts):
            try:
                if plan.kind == "coil":
                    await link.write_coils(
                        device.unit,
                        plan.address,
                        plan.coils,
                        single=plan.single,
                        patience=device.timeout,
                    )
                else:
                    await link.write_registers(
                        device.unit,
                        plan.address,
                        plan.registers,
                        single=plan.single,
                        patience=device.timeout,
                    )
            except (NoResponseError, BadResponseError) as exc:
                if attempt + 1 < attempts:
                    continue
                job.future.set_exception(CommandFailed(f"{device.label}: {exc}"))
                return
            except RefusedError as exc:
                job.future.set_exception(CommandFailed(f"{device.label} refused the write: {exc}"))
                return
            except LineDownError as exc:
                job.future.set_exception(CommandFailed(f"{device.label}: {exc}"))
                raise
            job.future.set_result(plan.describe())
            return
