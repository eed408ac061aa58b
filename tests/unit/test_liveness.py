"""Liveness: which stand-stills are wedges (pings stop) and which are not (offline, held)."""

from __future__ import annotations

import logging

import pytest

from edged.liveness import ForwardView, Liveness, UplinkView


class World:
    def __init__(self) -> None:
        self.now = 0.0
        self.connected = True
        self.attempts = 0
        self.state = "connected"
        self.backlog = 0
        self.held = False
        self.forwarded = 0

    def liveness(self) -> Liveness:
        return Liveness(
            UplinkView(lambda: self.connected, lambda: (self.state, self.attempts)),
            ForwardView(lambda: self.backlog, lambda: self.held, lambda: self.forwarded),
            uplink_limit=100,
            forward_limit=60,
            clock=lambda: self.now,
        )

    def run(self, liveness: Liveness, seconds: float, step: float = 5) -> list[str]:
        wedged: list[str] = []
        end = self.now + seconds
        while self.now < end:
            self.now += step
            wedged = liveness.wedged()
        return wedged


def test_an_unreachable_broker_is_not_a_wedge_while_attempts_go_on() -> None:
    world = World()
    liveness = world.liveness()
    world.connected, world.state, world.backlog = False, "waiting", 500
    for _ in range(100):  # 1000 s offline, an attempt every 10 s
        world.attempts += 1
        assert world.run(liveness, 10) == []


def test_a_connect_that_never_ends_is_a_wedge_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    world = World()
    liveness = world.liveness()
    world.connected, world.state = False, "connecting"
    assert world.run(liveness, 95) == []
    wedged = world.run(liveness, 60)
    assert len(wedged) == 1 and "uplink" in wedged[0]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "watchdog pings stop" in errors[0].getMessage()
    world.attempts += 1  # it moved on after all
    assert world.run(liveness, 5) == []
    assert "no longer wedged" in caplog.records[-1].getMessage()


def test_a_forwarder_with_work_and_no_progress_is_a_wedge() -> None:
    world = World()
    liveness = world.liveness()
    world.backlog = 10
    assert world.run(liveness, 60) == []  # first seen at 5 s: 55 s standing still
    wedged = world.run(liveness, 10)
    assert len(wedged) == 1 and "forwarder made no progress" in wedged[0]


@pytest.mark.parametrize("change", ["progress", "held", "empty", "offline"])
def test_a_forwarder_standing_still_for_a_reason_is_not_a_wedge(change: str) -> None:
    world = World()
    liveness = world.liveness()
    world.backlog = 10
    for _ in range(30):
        if change == "progress":
            world.forwarded += 1
        elif change == "held":
            world.held = True
        elif change == "empty":
            world.backlog = 0
        else:
            world.connected, world.state = False, "waiting"
            world.attempts += 1
        assert world.run(liveness, 10) == []
