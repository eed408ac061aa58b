"""The Modbus adapter plugin: one supervised runner per physical line.

Devices that share a line (one serial port, or one TCP endpoint with several unit ids behind
it) share one :class:`ModbusLine` runner, which alone talks on that line. Runners of different
lines are independent: a dead TCP device or an unplugged USB adapter only affects its own.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from edged.adapters.base import Adapter, AdapterContext, DeviceSpec, ReadingSink
from edged.adapters.modbus.config import BusConfig, DeviceConfig, Settings, resolve_bus
from edged.adapters.modbus.device import DevicePoller
from edged.adapters.modbus.link import LineDownError, Link, quiet_pymodbus_logging
from edged.adapters.modbus.scheduler import BusScheduler, raise_if_cancelled
from edged.backoff import Backoff
from edged.errors import CommandFailed, CommandUnsupported
from edged.model import Command, DeviceState, JSONValue

log = logging.getLogger(__name__)

_RECONNECT_INITIAL = 0.5


class ModbusLine(Adapter):
    """Owns one line: connects with backoff, polls its devices, carries out their commands."""

    def __init__(self, bus: BusConfig, specs: Sequence[DeviceSpec[DeviceConfig]]) -> None:
        url = bus.parsed_url
        super().__init__(f"modbus:{url}", [spec.identity for spec in specs])
        self.bus = bus
        self.url = url
        self.pollers = [DevicePoller(spec, bus) for spec in specs]
        self._by_identity = {poller.spec.identity: poller for poller in self.pollers}
        self.scheduler = BusScheduler(self.pollers, bus.retries)
        self.link: Link | None = None

    async def run(self, sink: ReadingSink) -> None:
        """Connect, poll until the line drops, reconnect with backoff; forever."""
        for poller in self.pollers:
            poller.attach(sink)
            sink.set_state(poller.spec.identity, DeviceState.STARTING)
        backoff = Backoff(
            initial=_RECONNECT_INITIAL, maximum=max(_RECONNECT_INITIAL, self.bus.reconnect_max)
        )
        failing = False
        while True:
            raise_if_cancelled()
            link = Link(
                self.url,
                timeout=self.bus.timeout,
                frame_delay=self.bus.frame_delay,
                connect_timeout=self.bus.connect_timeout,
            )
            try:
                await link.connect()
            except LineDownError as exc:
                if not failing:
                    log.error("%s: %s; retrying with backoff", self.name, exc)
                    for poller in self.pollers:
                        poller.line_down(str(exc))
                else:
                    log.debug("%s: still down: %s", self.name, exc)
                failing = True
                await asyncio.sleep(backoff.next_delay())
                continue
            if failing:
                log.info("%s: connected again", self.name)
            failing = False
            backoff.reset()
            self.link = link
            try:
                await self.scheduler.serve(link, sink)
            except LineDownError as exc:
                log.error("%s: %s; reconnecting with backoff", self.name, exc)
                failing = True
                for poller in self.pollers:
                    poller.line_down(str(exc))
                await asyncio.sleep(backoff.next_delay())
            finally:
                self.link = None
                link.close()

    async def execute(self, command: Command) -> Mapping[str, JSONValue] | None:
        """Write what ``command`` asks for; the write's outcome is the command's result."""
        poller = self._by_identity.get(command.device)
        if poller is None:
            raise CommandUnsupported(f"{command.device} is not on {self.name}")
        plan = poller.plan_command(command)
        if self.link is None:
            raise CommandFailed(f"{poller.label}: the line is not connected")
        return {"written": await self.scheduler.submit(poller, plan)}


def create_adapters(
    devices: Sequence[DeviceSpec[Any]], settings: Settings, context: AdapterContext
) -> list[Adapter]:
    """One :class:`ModbusLine` per physical line, holding every device on it."""
    quiet_pymodbus_logging()
    lines: dict[tuple[str, str], tuple[BusConfig, list[DeviceSpec[DeviceConfig]]]] = {}
    for spec in devices:
        bus = resolve_bus(spec.section, settings)
        if bus is None:  # cross_check reports it; keep going for the other lines
            log.error("%s: no bus named %r", spec.identity, spec.section.bus)
            continue
        entry = lines.setdefault(bus.parsed_url.line_key, (bus, []))
        entry[1].append(spec)
    return [ModbusLine(bus, specs) for bus, specs in lines.values()]
