"""Liveness: the watchdog is pinged only while the essential parts make progress.

systemd's watchdog (``WatchdogSec``) restarts the daemon when the pings stop. A ping proves the
event loop turns (a blocked loop sends none); :class:`Liveness` adds that the parts the loop
runs are not wedged:

* **the uplink's state machine advances**: while not connected, its state or its count of
  connection attempts changes within ``uplink_limit`` (a connect that hangs past every timeout
  stops the pings). Being offline because the broker is unreachable is not a wedge: each
  attempt is bounded, so the attempts keep counting up.
* **the forwarder makes progress when it can**: while connected, with messages in the outbox
  and no device held back by the registrar, the count of messages handed to the uplink or
  settled changes within ``forward_limit``.

A wedge is logged once, saying what is wedged, and the pings stop until it clears. Adapters are
not checked here: each bounds its own I/O (timeouts per request, per write, per connect) and a
device that stops answering is shown offline rather than restarting the whole gateway, which
would not fix the hardware and would drop every other device.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class _Watch:
    """One part's progress marker and when it last changed."""

    marker: Hashable = None
    changed: float = 0.0


@dataclass
class UplinkView:
    """What liveness reads of the uplink: connected, and a marker that moves while it tries."""

    connected: Callable[[], bool]
    progress: Callable[[], Hashable]


@dataclass
class ForwardView:
    """What liveness reads of the publish path."""

    backlog: Callable[[], int]
    """Messages in the outbox."""
    anyone_held: Callable[[], bool]
    """True while the registrar holds some device back (no progress is then expected)."""
    progress: Callable[[], Hashable]
    """Moves whenever a message is handed over or settled."""


@dataclass
class Liveness:
    """Decides, at each watchdog tick, whether every essential part is alive."""

    uplink: UplinkView
    forward: ForwardView
    uplink_limit: float
    forward_limit: float
    clock: Callable[[], float] = time.monotonic
    _uplink: _Watch = field(default_factory=_Watch)
    _forward: _Watch = field(default_factory=_Watch)
    _reported: frozenset[str] = frozenset()

    def wedged(self) -> list[str]:
        """What is wedged now (empty: all alive). Logs each new wedge once, and its end."""
        now = self.clock()
        problems: dict[str, str] = {}
        connected = self.uplink.connected()
        if not connected:
            stalled = self._stalled(self._uplink, ("down", self.uplink.progress()), now)
            if stalled > self.uplink_limit:
                problems["uplink"] = (
                    f"the uplink has not moved on from connecting for {stalled:.0f} s"
                )
        else:
            self._stalled(self._uplink, ("up",), now)
        if connected and self.forward.backlog() and not self.forward.anyone_held():
            stalled = self._stalled(self._forward, ("busy", self.forward.progress()), now)
            if stalled > self.forward_limit:
                problems["forwarder"] = (
                    f"the forwarder made no progress for {stalled:.0f} s with "
                    f"{self.forward.backlog()} messages waiting and the uplink connected"
                )
        else:
            self._stalled(self._forward, ("idle",), now)
        self._report(problems)
        return list(problems.values())

    @staticmethod
    def _stalled(watch: _Watch, marker: Hashable, now: float) -> float:
        """Seconds since ``marker`` last changed (0 when it just did)."""
        if marker != watch.marker:
            watch.marker, watch.changed = marker, now
        return now - watch.changed

    def _report(self, problems: dict[str, str]) -> None:
        current = frozenset(problems)
        if current - self._reported:
            log.error(
                "wedged: %s; watchdog pings stop so that systemd restarts edged",
                "; ".join(problems.values()),
            )
        elif self._reported and not current:
            log.warning("no longer wedged; watchdog pings resume")
        self._reported = current
