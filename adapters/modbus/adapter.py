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
from edged.adapters.modbus.link import (
    LineDownError,
    Link,
    LinkStats,
    quiet_pymodbus_logging,
)
from edged.adapters.modbus.scheduler import BusScheduler, raise_if_cancelled
from edged.errors import CommandFailed, CommandUnsupported
from edged.linkretry import LinkRetry
from edged.logsetup import adapter_extra
from edged.model import Command, DeviceState, JSONValue

log = logging.getLogger(__name__)

RECONNECT_INITIAL = 0.5
"""Seconds before the first reconnect; the delay doubles up to the bus's ``reconnect_max``."""
STABLE_AFTER = 10.0
"""Seconds a line must stay connected before the reconnect delay starts again from the first."""


class ModbusLine(Adapter):
    """Owns one line: connects with backoff, polls its devices, carries out their commands.

    ``reconnect_initial`` and ``stable_after`` are for tests; the daemon uses the defaults.
    """

    def __init__(
        self,
        bus: BusConfig,
        specs: Sequence[DeviceSpec[DeviceConfig]],
        *,
        reconnect_initial: float = RECONNECT_INITIAL,
        stable_after: float = STABLE_AFTER,
    ) -> None:
        url = bus.parsed_url
        super().__init__(f"modbus:{url}", [spec.identity for spec in specs])
        self.bus = bus
        self.url = url
        self.pollers = [DevicePoller(spec, bus) for spec in specs]
        self._by_identity = {poller.spec.identity: poller for poller in self.pollers}
        self.scheduler = BusScheduler(self.pollers, bus.retries)
        self.link: Link | None = None
        self.stats = LinkStats()
        """Transaction counters of every connection this line made."""
        self.retry = LinkRetry(
            log,
            self.name,
            initial=reconnect_initial,
            maximum=max(reconnect_initial, bus.reconnect_max),
            stable_after=stable_after,
            extra=adapter_extra(self.name),
        )

    async def run(self, sink: ReadingSink) -> None:
        """Connect, poll until the line drops, reconnect with backoff; forever.

        The backoff starts again from the first delay only after a connection stayed up for
        ``stable_after`` seconds, so an endpoint that accepts and drops at once (a gateway at
        its connection limit) is retried ever more slowly; each failure episode is logged
        once (ERROR), its end once (INFO), the repeats at DEBUG.
        """
        for poller in self.pollers:
            poller.attach(sink)
            sink.set_state(poller.spec.identity, DeviceState.STARTING)
        try:
            while True:
                raise_if_cancelled()
                link = Link(
                    self.url,
                    timeout=self.bus.timeout,
                    frame_delay=self.bus.frame_delay,
                    connect_timeout=self.bus.connect_timeout,
                    stats=self.stats,
                )
                try:
                    await link.connect()
                except LineDownError as exc:
                    self._line_down(str(exc))
                    await asyncio.sleep(self.retry.attempt_failed(str(exc), logging.ERROR))
                    continue
                self.retry.connected()
                self.link = link
                try:
                    await self.scheduler.serve(link, sink)
                except LineDownError as exc:
                    self._line_down(str(exc))
                    await asyncio.sleep(self.retry.lost(str(exc), logging.ERROR))
                finally:
                    self.link = None
                    link.close()
        finally:
            self.retry.close()

    def counters(self) -> Mapping[str, JSONValue]:
        """This line's transactions, timeouts, refusals, bad and late answers, and outages."""
        stats = self.stats
        return {
            "transactions": stats.transactions,
            "timeouts": stats.timeouts,
            "refusals": stats.refusals,
            "bad_answers": stats.bad,
            "late_answers": stats.late,
            "line_outages": self.retry.episodes,
        }

    def _line_down(self, reason: str) -> None:
        for poller in self.pollers:
            poller.line_down(reason)

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
