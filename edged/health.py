"""The gateway's health as one bounded report: published as the status event, shown in STATUS=.

Bounded at any device count: devices are listed one by one up to :data:`MAX_LISTED_DEVICES`;
beyond that only those not online are listed (up to the same number) and the rest counted. A
report that would still exceed the platform's payload limit loses its per-device and
per-adapter detail (``"truncated": true``) rather than not being sent. An adapter whose
``counters()`` raises gets an error entry instead of ending the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edged import codec
from edged.adapters.base import Adapter
from edged.bridge import Bridge
from edged.model import DeviceState
from edged.registrar.problems import NotifyProblems
from edged.supervisor import Supervisor
from edged.text import safe
from edged.uplink import Uplink

log = logging.getLogger(__name__)

MAX_LISTED_DEVICES = 500
REPORT_BUDGET = codec.MAX_PAYLOAD - 4096
"""Bytes a status body may take, leaving room for the event envelope."""


@dataclass
class HealthReport:
    """Builds the status body from the parts that own each piece of state."""

    bridge: Bridge
    uplink: Uplink
    supervisor: Supervisor
    adapters: list[Adapter]
    notify: NotifyProblems
    unavailable: Mapping[str, str]
    sections: Mapping[str, Callable[[], dict[str, Any]]] = field(default_factory=dict)
    """Further parts' own bounded reports (registration, device management), by key."""
    line_parts: Sequence[Callable[[], str]] = ()
    """Further short phrases for :meth:`summary_line`."""
    started: float = field(default_factory=time.monotonic)
    clock: Callable[[], float] = time.monotonic
    _counters_failing: set[str] = field(default_factory=set)

    def build(self) -> dict[str, Any]:
        """The status body; always under :data:`REPORT_BUDGET` bytes once encoded."""
        bridge, stats = self.bridge, self.uplink.stats
        outbox = bridge.outbox
        report: dict[str, Any] = {
            "uptime": round(self.clock() - self.started, 1),
            "devices": bridge.device_counts(),
            **self._device_states(),
            "outbox": {
                "depth": outbox.depth,
                "bytes": outbox.stored_bytes,
                "oldestAge": round(outbox.oldest_age(), 1),
                **outbox.counters,
                "droppedBy": dict(outbox.dropped.most_common(20)),
            },
            "uplink": {
                "connected": stats.connected,
                "reconnects": stats.reconnects,
                "inflight": stats.inflight,
                "published": stats.published,
                "acked": stats.acked,
                "oversizeRefused": stats.refused_oversize + bridge.counters["oversize_refused"],
            },
            "counters": {
                **bridge.counters,
                **bridge.commands.counters,
                "notify": self.notify.total,
            },
            "notify": self.notify.summary(),
            "adapters": self._adapters(),
        }
        for key, section in self.sections.items():
            report[key] = section()
        if len(codec.encode_event(report, 0.0)) > REPORT_BUDGET:
            report["deviceStates"] = {}
            report["adapters"] = {name: {} for name in report["adapters"]}
            report["notify"] = {"total": self.notify.total}
            for key in self.sections:
                report[key] = {"truncated": True}
            report["outbox"]["droppedBy"] = {}
            report["truncated"] = True
        return report

    def _device_states(self) -> dict[str, Any]:
        states = self.bridge.states
        if len(states) <= MAX_LISTED_DEVICES:
            return {"deviceStates": {str(d): s.state.value for d, s in states.items()}}
        listed: dict[str, str] = {}
        for device, status in states.items():
            if status.state is not DeviceState.ONLINE:
                listed[str(device)] = status.state.value
                if len(listed) >= MAX_LISTED_DEVICES:
                    break
        return {"deviceStates": listed, "deviceStatesOmitted": len(states) - len(listed)}

    def _adapters(self) -> dict[str, Any]:
        entries: dict[str, Any] = {}
        for adapter in self.adapters:
            health = self.supervisor.health[adapter.name]
            entry: dict[str, Any] = {
                "failing": health.failing,
                "restarts": health.restarts,
                "lastError": None if health.last_error is None else safe(health.last_error),
            }
            try:
                counters = dict(adapter.counters())
            except Exception as exc:  # one adapter's bug must not end the report
                counters = {}
                entry["countersError"] = safe(f"{type(exc).__name__}: {exc}")
                if adapter.name not in self._counters_failing:
                    self._counters_failing.add(adapter.name)
                    log.exception("adapter %s: counters() raised", adapter.name)
            else:
                self._counters_failing.discard(adapter.name)
            if counters:
                entry["counters"] = counters
            entries[adapter.name] = entry
        for name, why in self.unavailable.items():
            entries[name] = {"failing": True, "restarts": 0, "lastError": safe(why)}
        return entries

    def summary_line(self) -> str:
        """One line for systemd's STATUS=."""
        counts = self.bridge.device_counts()
        return (
            f"{'connected' if self.uplink.connected else 'connecting'}; "
            f"{counts['online']}/{len(self.bridge.states)} devices online; "
            f"outbox {self.bridge.outbox.depth} ({self.bridge.outbox.stored_bytes} bytes, "
            f"oldest {self.bridge.outbox.oldest_age():.0f} s)"
        ) + "".join(f"; {part()}" for part in self.line_parts)
