"""Runs each adapter as a named task and restarts it with backoff when it fails.

Runners can be stopped and started while it runs (a config reload, :mod:`edged.reload`).

Logging follows state transitions only: one ERROR when an adapter starts failing, DEBUG while it
keeps failing, one INFO when it has run long enough again to count as recovered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from edged.adapters.base import Adapter, ReadingSink
from edged.backoff import Backoff
from edged.errors import PermanentAdapterError, TransientAdapterError
from edged.logsetup import adapter_extra
from edged.model import DeviceState

log = logging.getLogger(__name__)

HEALTHY_AFTER = 30.0
"""Seconds an adapter must run without failing to count as recovered (and reset its backoff)."""


@dataclass
class AdapterHealth:
    """What the supervisor knows about one adapter runner."""

    name: str
    failing: bool = False
    failures: int = 0
    restarts: int = 0
    last_error: str | None = None
    started_at: float = field(default_factory=time.monotonic)


class Supervisor:
    """Owns the adapter tasks. :meth:`run` starts them all and returns only when cancelled."""

    def __init__(
        self,
        adapters: Iterable[Adapter],
        sink: ReadingSink,
        *,
        backoff_factory: Callable[[], Backoff] = lambda: Backoff(initial=1.0, maximum=60.0),
        permanent_backoff_factory: Callable[[], Backoff] = lambda: Backoff(
            initial=30.0, maximum=600.0
        ),
        healthy_after: float = HEALTHY_AFTER,
    ) -> None:
        self.adapters = list(adapters)
        self.sink = sink
        self.health = {adapter.name: AdapterHealth(adapter.name) for adapter in self.adapters}
        self._backoff_factory = backoff_factory
        self._permanent_backoff_factory = permanent_backoff_factory
        self._healthy_after = healthy_after
        self._group: asyncio.TaskGroup | None = None
        self._tasks: dict[int, asyncio.Task[None]] = {}  # by id() of the adapter

    async def run(self) -> None:
        """Run every adapter under supervision until cancelled."""
        async with asyncio.TaskGroup() as group:
            self._group = group
            try:
                for adapter in self.adapters:
                    self._launch(adapter)
                await asyncio.get_running_loop().create_future()  # runners come and go
            finally:
                self._group = None

    def _launch(self, adapter: Adapter) -> None:
        assert self._group is not None
        task = self._group.create_task(self._supervise(adapter), name=f"adapter:{adapter.name}")
        self._tasks[id(adapter)] = task
        task.add_done_callback(lambda _: self._tasks.pop(id(adapter), None))

    def start(self, adapters: Iterable[Adapter]) -> None:
        """Add ``adapters`` and run them (at once when :meth:`run` is running)."""
        for adapter in adapters:
            self.adapters.append(adapter)
            self.health[adapter.name] = AdapterHealth(adapter.name)
            if self._group is not None:
                self._launch(adapter)

    async def stop(self, adapters: Iterable[Adapter], timeout: float) -> list[str]:  # noqa: ASYNC109
        """Cancel ``adapters`` and forget them, waiting at most ``timeout`` s for their tasks.

        Returns the names of the runners that did not stop in time (they are forgotten
        anyway; their tasks end whenever they honour the cancellation).
        """
        doomed = list(adapters)
        tasks = [task for a in doomed if (task := self._tasks.get(id(a))) is not None]
        for task in tasks:
            task.cancel()
        stuck: set[asyncio.Task[None]] = set()
        if tasks:
            _, stuck = await asyncio.wait(tasks, timeout=timeout)
        for adapter in doomed:
            with contextlib.suppress(ValueError):
                self.adapters.remove(adapter)
            self.health.pop(adapter.name, None)
        return sorted(task.get_name() for task in stuck)

    def _mark_devices(self, adapter: Adapter, state: DeviceState, detail: str) -> None:
        for device in adapter.devices:
            self.sink.set_state(device, state, detail)

    async def _supervise(self, adapter: Adapter) -> None:
        health = self.health[adapter.name]
        backoff = self._backoff_factory()
        slow_backoff = self._permanent_backoff_factory()
        while True:
            health.started_at = time.monotonic()
            try:
                await adapter.run(self.sink)
                error: BaseException = RuntimeError("adapter returned without being cancelled")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - the one place every adapter failure lands
                error = exc
            ran_for = time.monotonic() - health.started_at
            if ran_for >= self._healthy_after:
                backoff.reset()
                slow_backoff.reset()
            permanent = isinstance(error, PermanentAdapterError)
            delay = (slow_backoff if permanent else backoff).next_delay()
            health.failures += 1
            health.restarts += 1
            health.last_error = f"{type(error).__name__}: {error}"
            known = isinstance(error, TransientAdapterError | PermanentAdapterError)
            if not health.failing:
                health.failing = True
                log.error(
                    "adapter %s failed: %s; restarting in %.1f s (repeats logged at DEBUG)",
                    adapter.name,
                    error,
                    delay,
                    exc_info=None if known else error,
                    extra=adapter_extra(adapter.name),
                )
            else:
                log.debug(
                    "adapter %s failed again: %s; retry in %.1f s",
                    adapter.name,
                    error,
                    delay,
                    extra=adapter_extra(adapter.name),
                )
            self._mark_devices(adapter, DeviceState.DOWN, str(error))
            await asyncio.sleep(delay)
            self._mark_devices(adapter, DeviceState.STARTING, "restarting")
            asyncio.get_running_loop().call_later(
                self._healthy_after, self._maybe_recovered, adapter.name, health.restarts
            )

    def _maybe_recovered(self, name: str, restarts_then: int) -> None:
        health = self.health.get(name)  # gone when the runner was stopped (a reload)
        if health is not None and health.failing and health.restarts == restarts_then:
            health.failing = False
            log.info(
                "adapter %s recovered after %d failures",
                name,
                health.failures,
                extra=adapter_extra(name),
            )


async def keep_running(
    name: str,
    work: Callable[[], Awaitable[None]],
    *,
    backoff: Backoff | None = None,
    healthy_after: float = HEALTHY_AFTER,
) -> None:
    """Run a core task (forwarder, status loop) until cancelled, restarting it if it fails.

    A core task has no reason to fail: when it does, that is a bug, so its first failure in a
    streak is logged with the traceback, repeats at DEBUG, and it is restarted with backoff
    rather than taking the daemon (and every device) down with it.
    """
    delays = backoff or Backoff(initial=1.0, maximum=60.0)
    failing = False
    while True:
        started = time.monotonic()
        try:
            await work()
            error: Exception = RuntimeError("returned without being cancelled")
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - see the docstring
            error = exc
        if time.monotonic() - started >= healthy_after:
            delays.reset()
            failing = False
        delay = delays.next_delay()
        if failing:
            log.debug("%s failed again: %r; restarting in %.1f s", name, error, delay)
        else:
            failing = True
            log.error(
                "%s failed: %r; restarting in %.1f s (a bug: please report it)",
                name,
                error,
                delay,
                exc_info=error,
            )
        await asyncio.sleep(delay)
