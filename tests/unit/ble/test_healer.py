"""The recovery ladder: restart discovery, power-cycle, escalate; each step once."""

from __future__ import annotations

import pytest

from edged.adapters.ble.healer import Action, Healer, Step

pytestmark = pytest.mark.ble


def test_the_ladder_climbs_one_step_per_recovery_wait() -> None:
    healer = Healer(recovery_wait=30.0)
    assert healer.assess(None, 0.0) is None
    assert healer.assess("silent", 1.0) is Action.RESTART_DISCOVERY
    assert healer.assess("silent", 30.9) is None
    assert healer.assess("silent", 31.0) is Action.POWER_CYCLE
    assert healer.assess("still silent", 61.0) is Action.ESCALATE
    assert healer.assess("silent", 500.0) is None, "escalated once"
    assert healer.symptom == "silent"
    assert healer.tried == [Action.RESTART_DISCOVERY, Action.POWER_CYCLE, Action.ESCALATE]


def test_recovery_ends_the_episode() -> None:
    healer = Healer(recovery_wait=30.0)
    healer.assess("silent", 0.0)
    assert healer.assess(None, 5.0) is Action.RECOVERED
    assert healer.assess(None, 6.0) is None
    assert healer.assess("errors", 7.0) is Action.RESTART_DISCOVERY, (
        "a new episode starts at the bottom"
    )
    assert healer.tried == [Action.RESTART_DISCOVERY]


def test_without_power_cycling_restart_is_followed_by_escalation() -> None:
    healer = Healer(recovery_wait=10.0, power_cycle=False)
    assert healer.assess("x", 0.0) is Action.RESTART_DISCOVERY
    assert healer.assess("x", 10.0) is Action.ESCALATE


def test_restart_starts_over_and_tells_whether_it_had_escalated() -> None:
    healer = Healer(recovery_wait=1.0)
    assert healer.restart() is False
    for now in (0.0, 1.0, 2.0):
        healer.assess("x", now)
    assert healer.step is Step.ESCALATED
    assert healer.restart() is True
    assert healer.assess("x", 3.0) is Action.RESTART_DISCOVERY
    healer.assess("x", 4.0)
    assert healer.restart() is False, "an unfinished episode is closed quietly"
    assert healer.assess(None, 5.0) is None, "nothing left to recover from"
