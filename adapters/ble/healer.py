"""The recovery ladder for a wedged controller: restart discovery, power-cycle, escalate. Pure.

The controller reports a *symptom* on every housekeeping tick (or ``None`` when healthy). The
first symptom after a healthy spell restarts discovery; if the symptom is still there
``recovery_wait`` later the controller is power-cycled (when allowed); ``recovery_wait`` after
that the problem is escalated. Any healthy tick ends the episode. Each step is returned once, so
the caller logs each step once.
"""

from __future__ import annotations

import enum


class Action(enum.Enum):
    """What the controller should do now."""

    RESTART_DISCOVERY = "restart discovery"
    POWER_CYCLE = "power-cycle the controller"
    ESCALATE = "escalate"
    RECOVERED = "recovered"


class Step(enum.IntEnum):
    """How far up the ladder the current episode has climbed."""

    HEALTHY = 0
    RESTARTED = 1
    POWER_CYCLED = 2
    ESCALATED = 3


class Healer:
    """The ladder's state; feed it :meth:`assess` on every tick."""

    def __init__(self, *, recovery_wait: float, power_cycle: bool = True) -> None:
        self.recovery_wait = recovery_wait
        self.power_cycle = power_cycle
        self.step = Step.HEALTHY
        self.since = 0.0
        self.symptom: str | None = None
        """The symptom that started the current episode."""
        self.tried: list[Action] = []
        """Steps taken in the current episode."""

    def assess(self, symptom: str | None, now: float) -> Action | None:
        """The next action for ``symptom`` at ``now``, or ``None`` to keep waiting."""
        if symptom is None:
            if self.step is Step.HEALTHY:
                return None
            self.step = Step.HEALTHY
            return Action.RECOVERED
        if self.step is Step.HEALTHY:
            self.symptom = symptom
            self.tried = []
            return self._climb(Step.RESTARTED, Action.RESTART_DISCOVERY, now)
        if self.step is Step.ESCALATED or now - self.since < self.recovery_wait:
            return None
        if self.step is Step.RESTARTED and self.power_cycle:
            return self._climb(Step.POWER_CYCLED, Action.POWER_CYCLE, now)
        return self._climb(Step.ESCALATED, Action.ESCALATE, now)

    def _climb(self, step: Step, action: Action, now: float) -> Action:
        self.step = step
        self.since = now
        self.tried.append(action)
        return action

    def restart(self) -> bool:
        """Close any unfinished episode (the runner starts again); True if it had escalated."""
        escalated = self.step is Step.ESCALATED
        self.step = Step.HEALTHY
        return escalated
