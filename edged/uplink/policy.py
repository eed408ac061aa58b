"""When to reconnect and what to log: a pure state machine, driven by the session.

Rules:

* The normal backoff (``reconnect_initial`` doubling to ``reconnect_max``, jittered) follows
  network trouble. It resets only when a connection *ended after being healthy* for
  ``stable_after`` seconds, so a broker that accepts and then drops us at once never makes us
  reconnect in a tight loop.
* Refusals of the gateway's credentials or identity, and a suspected duplicate gateway, use the
  slower ``refused_initial`` .. ``refused_max`` schedule: retrying fast cannot help.
* A duplicate gateway is suspected after a DISCONNECT with reason 142 (MQTT 5: session taken
  over), or after :data:`QUICK_DROPS_FOR_TAKEOVER` connections in a row that the other side
  closed within ``stable_after`` of their CONNACK (MQTT 3.1.1 just closes the socket). The
  suspicion lasts until a connection stays up for ``max(stable_after, refused_max)``.
* Logging follows state changes: a new problem is logged once (ERROR for configuration-type
  problems, WARNING for network trouble), repeats go to DEBUG, recovery is logged at INFO.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field

from edged.backoff import Backoff
from edged.uplink.connect import ConnectError, FailureKind
from edged.uplink.reasons import takeover_message

QUICK_DROPS_FOR_TAKEOVER = 3

_SLOW_KINDS = {
    FailureKind.REFUSED_AUTH,
    FailureKind.REFUSED_ID,
    FailureKind.REFUSED_PROTOCOL,
    FailureKind.REFUSED_OTHER,
}
_WARNING_KINDS = {FailureKind.UNREACHABLE, FailureKind.TIMEOUT, FailureKind.REFUSED_BUSY}


@dataclass(frozen=True)
class Step:
    """What to do next: wait ``delay`` seconds; log ``message`` at ``level`` (None: nothing)."""

    delay: float
    level: int
    message: str | None


@dataclass
class ReconnectPolicy:
    """Decides delays and log levels from what happened to each attempt and connection."""

    client_id: str
    endpoint: str
    reconnect_initial: float
    reconnect_max: float
    refused_initial: float
    refused_max: float
    stable_after: float
    rng: random.Random = field(default_factory=random.Random)
    suspected_takeover: bool = field(default=False, init=False)
    failed_attempts: int = field(default=0, init=False)
    _problem: str | None = field(default=None, init=False)
    _quick_drops: int = field(default=0, init=False)
    _ever_connected: bool = field(default=False, init=False)
    _announced: bool = field(default=False, init=False)  # a WARNING/ERROR awaits its recovery line

    def __post_init__(self) -> None:
        self._normal = Backoff(self.reconnect_initial, self.reconnect_max, rng=self.rng)
        self._slow = Backoff(self.refused_initial, self.refused_max, rng=self.rng)

    def suspects_takeover(self, uptime: float) -> bool:
        """Whether a client id clash is still suspected, given the current connection's uptime."""
        return self.suspected_takeover and uptime < max(self.stable_after, self.refused_max)

    @property
    def problem(self) -> str | None:
        """The problem currently reported (a short key), or None while all is well."""
        return self._problem

    def attempt_failed(self, failure: ConnectError) -> Step:
        """An attempt ended before a successful CONNACK."""
        self.failed_attempts += 1
        self._quick_drops = 0  # the takeover pattern is a run of *successful* connects
        slow = failure.kind in _SLOW_KINDS
        delay = (self._slow if slow else self._normal).next_delay()
        key = f"{failure.kind.value}: {failure.message}"  # a different problem is news
        level = logging.WARNING if failure.kind in _WARNING_KINDS else logging.ERROR
        return self._report(key, level, f"{failure.message}; retrying in {delay:.1f} s", delay)

    def connected(self, *, session_present: bool) -> tuple[int, str]:
        """A CONNACK accepted us: the log level and line for it."""
        self._problem = None
        first = not self._ever_connected
        self._ever_connected = True
        failed, self.failed_attempts = self.failed_attempts, 0
        announced, self._announced = self._announced, False
        session = "session resumed" if session_present else "new session"
        if self.suspected_takeover:
            return (
                logging.DEBUG,
                f"connected to {self.endpoint} ({session}) despite the client id clash",
            )
        after = f" after {failed} failed attempt(s)" if failed else ""
        if first:
            return (
                logging.INFO,
                f"connected to {self.endpoint} as {self.client_id}{after} ({session})",
            )
        if not announced:
            return logging.DEBUG, f"connected to {self.endpoint} again ({session})"
        return logging.INFO, f"connected to {self.endpoint} again{after} ({session})"

    def connection_ended(
        self, lifetime: float, reason: str, *, taken_over: bool = False, keepalive: bool = False
    ) -> Step:
        """An established connection ended without us asking, after ``lifetime`` seconds."""
        clear_after = max(self.stable_after, self.refused_max)
        if taken_over:
            return self._suspect(f"the broker said: session taken over after {lifetime:.1f} s")
        if self.suspected_takeover and lifetime < clear_after:
            delay = self._slow.next_delay()
            return Step(
                delay,
                logging.DEBUG,
                f"connection closed again ({reason}); retrying in {delay:.1f} s",
            )
        if lifetime >= self.stable_after:
            self.suspected_takeover = False
            self._quick_drops = 0
            self._normal.reset()
            self._slow.reset()
            delay = self._normal.next_delay()
            return self._report(
                "lost",
                logging.WARNING,
                f"lost the connection to {self.endpoint} ({reason}); reconnecting in {delay:.1f} s",
                delay,
                force=True,
            )
        if not keepalive:
            self._quick_drops += 1
            if self._quick_drops >= QUICK_DROPS_FOR_TAKEOVER:
                return self._suspect(
                    f"the broker closed {self._quick_drops} connections in a row within"
                    f" {self.stable_after:g} s of accepting them"
                )
        delay = self._normal.next_delay()
        return self._report(
            "lost",
            logging.WARNING if self._quick_drops <= 1 else logging.DEBUG,
            f"lost the connection to {self.endpoint} {lifetime:.1f} s after connecting ({reason});"
            f" reconnecting in {delay:.1f} s",
            delay,
            force=True,
        )

    def _suspect(self, evidence: str) -> Step:
        delay = self._slow.next_delay()
        announced = self.suspected_takeover
        self.suspected_takeover = True
        self._problem = "takeover"
        if announced:
            return Step(
                delay,
                logging.DEBUG,
                f"client id clash continues ({evidence}); retrying in {delay:.1f} s",
            )
        self._announced = True
        message = f"{takeover_message(self.client_id, evidence)}; next attempt in {delay:.1f} s"
        return Step(delay, logging.ERROR, message)

    def _report(
        self, key: str, level: int, message: str, delay: float, *, force: bool = False
    ) -> Step:
        if key == self._problem and not force:
            level = logging.DEBUG
        self._problem = key
        if level >= logging.WARNING:
            self._announced = True
        return Step(delay, level, message)
