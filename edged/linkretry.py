"""One reconnect-and-liveness rule for every link (serial port, Modbus line, BLE connection).

The rule:

* After a failed attempt or a lost link, wait a jittered delay that doubles up to a maximum.
* The delay starts again from the beginning only after the link *stayed up* for
  ``stable_after`` seconds. An endpoint that accepts and then drops at once (a Modbus gateway
  at its connection limit, a BLE peripheral that disconnects on connect) therefore backs off
  exactly as one that refuses, instead of being retried every second forever.
* Logging follows episodes, not events: the first failure of an episode is logged once (at the
  level given, WARNING by default), repeats go to DEBUG, and recovery is logged once at INFO
  when the link has stayed up for ``stable_after`` seconds.

The uplink's :class:`~edged.uplink.policy.ReconnectPolicy` follows the same rule and adds what
only MQTT needs (refused credentials, client id takeover).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Mapping

from edged.backoff import Backoff


class LinkRetry:
    """Backoff and transition logging for one link; drive it with the three event methods.

    ``connected()`` when the link came up, ``attempt_failed(reason)`` when an attempt to bring it
    up failed, ``lost(reason)`` when an established link went down; the last two return the
    delay to wait before the next attempt.
    """

    def __init__(
        self,
        logger: logging.Logger,
        name: str,
        *,
        initial: float,
        maximum: float,
        stable_after: float,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        if stable_after < 0:
            raise ValueError("stable_after must be >= 0")
        self.logger = logger
        self.name = name
        self.extra = dict(extra or {})
        """Structured log fields for every line (:func:`edged.logsetup.device_extra`)."""
        self.stable_after = stable_after
        self.clock = clock
        self.backoff = Backoff(initial=initial, maximum=maximum, rng=rng or random.Random())
        self.failing = False
        """True from the first failure of an episode until the link stayed up again."""
        self.failures = 0
        """Failures in the current episode."""
        self.episodes = 0
        """Failure episodes since start (each logged once)."""
        self._up_since: float | None = None
        self._confirm: asyncio.TimerHandle | None = None

    @property
    def up(self) -> bool:
        """Whether the link is up now (between ``connected()`` and ``lost()``)."""
        return self._up_since is not None

    def connected(self) -> None:
        """The link came up. Recovery is confirmed (and logged) once it stays up long enough."""
        self._up_since = self.clock()
        self._cancel_confirm()
        if self.stable_after == 0:
            self._stable()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # driven without a loop (pure tests): confirmed on the next event
            return
        self._confirm = loop.call_later(self.stable_after, self._stable)

    def attempt_failed(self, reason: str, level: int = logging.WARNING) -> float:
        """An attempt to bring the link up failed; returns the delay before the next one."""
        self._up_since = None
        self._cancel_confirm()
        return self._failure(reason, level)

    def lost(self, reason: str, level: int = logging.WARNING) -> float:
        """The established link went down; returns the delay before reconnecting."""
        up_since, self._up_since = self._up_since, None
        self._cancel_confirm()
        if up_since is not None and self.clock() - up_since >= self.stable_after:
            self._stable()  # it had been healthy: this is a new episode, from the first delay
        return self._failure(reason, level)

    def close(self) -> None:
        """Forget any pending recovery timer (the link's owner is stopping)."""
        self._cancel_confirm()

    def _failure(self, reason: str, level: int) -> float:
        delay = self.backoff.next_delay()
        self.failures += 1
        if not self.failing:
            self.failing = True
            self.episodes += 1
            self.logger.log(
                level,
                "%s: %s; retrying in %.1f s (repeats logged at DEBUG until it recovers)",
                self.name,
                reason,
                delay,
                extra=self.extra,
            )
        elif self.logger.isEnabledFor(logging.DEBUG):
            self.logger.debug(
                "%s: %s (failure %d); retrying in %.1f s",
                self.name,
                reason,
                self.failures,
                delay,
                extra=self.extra,
            )
        return delay

    def _stable(self) -> None:
        self._confirm = None
        self.backoff.reset()
        if self.failing:
            self.logger.info(
                "%s: recovered after %d failure(s)", self.name, self.failures, extra=self.extra
            )
        self.failing = False
        self.failures = 0

    def _cancel_confirm(self) -> None:
        if self._confirm is not None:
            self._confirm.cancel()
            self._confirm = None
