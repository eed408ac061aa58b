"""The simulated adapter: one runner per device, readings from signals or a script."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

from edged.adapters.base import Adapter, AdapterContext, DeviceSpec, ReadingSink
from edged.adapters.simulated.config import DeviceConfig, Settings, SignalConfig
from edged.errors import CommandFailed, CommandRejected, CommandUnsupported, TransientAdapterError
from edged.model import Command, DeviceState, JSONValue, Reading


def _signal(signal: SignalConfig, step: int, now: float, rng: random.Random) -> float | int:
    span = signal.max - signal.min
    if signal.kind == "counter":
        return int(signal.min) + (step % (int(span) + 1) if span >= 1 else 0)
    if signal.kind == "constant":
        value = signal.min
    elif signal.kind == "sine":
        value = signal.min + span * (0.5 + 0.5 * math.sin(2 * math.pi * now / signal.period))
    else:
        value = rng.uniform(signal.min, signal.max)
    return round(value, signal.decimals)


class SimulatedDevice(Adapter):
    """Emits a reading every ``interval``; ``set`` commands override values."""

    def __init__(self, spec: DeviceSpec[DeviceConfig]) -> None:
        super().__init__(f"simulated:{spec.identity}", [spec.identity])
        self.spec = spec
        self.overrides: dict[str, JSONValue] = {}
        self.emitted = 0
        self._rng = random.Random(str(spec.identity))

    def _values(self, step: int, now: float) -> dict[str, JSONValue]:
        cfg = self.spec.section
        values: dict[str, JSONValue] = {}
        if cfg.script:
            values.update(cfg.script[step % len(cfg.script)])
        for name, signal in cfg.values.items():
            values[name] = _signal(signal, step, now, self._rng)
        values.update(self.overrides)
        return values

    async def run(self, sink: ReadingSink) -> None:
        cfg, device = self.spec.section, self.spec.identity
        sink.set_state(device, DeviceState.ONLINE)
        since_start = 0
        while cfg.count is None or self.emitted < cfg.count:
            now = time.time()
            await sink.emit(Reading(device, self.spec.event, self._values(self.emitted, now), now))
            self.emitted += 1
            since_start += 1
            if cfg.fail_after is not None and since_start >= cfg.fail_after:
                raise TransientAdapterError(f"simulated failure after {since_start} readings")
            if cfg.interval > 0:
                await asyncio.sleep(cfg.interval)
            elif since_start % 256 == 0:
                await asyncio.sleep(0)  # let others run when emitting flat out
        await asyncio.Event().wait()  # done emitting; keep serving commands

    async def execute(self, command: Command) -> Mapping[str, JSONValue] | None:
        if self.spec.section.command_delay:
            await asyncio.sleep(self.spec.section.command_delay)
        if command.name == "set":
            if not isinstance(command.data, dict) or not command.data:
                raise CommandRejected('set needs a JSON object of values, e.g. {"setpoint": 21.5}')
            values = {k: v for k, v in command.data.items() if k not in ("reqId", "correlationId")}
            for key, value in values.items():
                if not isinstance(value, int | float | str | bool):
                    raise CommandRejected(f"value of {key!r} must be a number, string or boolean")
            self.overrides.update(values)
            return {"applied": values}
        if command.name == "echo":
            return {"echo": command.data}
        if command.name == "fail":
            raise CommandFailed("simulated hardware failure")
        raise CommandUnsupported(f"unknown command {command.name!r}; known: set, echo, fail")


def create_adapters(
    devices: Sequence[DeviceSpec[Any]], settings: Settings, context: AdapterContext
) -> list[Adapter]:
    """One independent runner per simulated device."""
    return [SimulatedDevice(spec) for spec in devices]
