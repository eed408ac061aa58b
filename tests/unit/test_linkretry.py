"""The shared reconnect rule: backoff grows while a link drops quickly, logs once per episode."""

from __future__ import annotations

import asyncio
import logging
import random

import pytest

from edged.linkretry import LinkRetry


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, stable_after: float = 10.0) -> LinkRetry:
    return LinkRetry(
        logging.getLogger("test.link"),
        "line A",
        initial=1.0,
        maximum=60.0,
        stable_after=stable_after,
        clock=clock,
        rng=random.Random(1),
    )


def test_accept_then_drop_grows_the_backoff_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    link = make(clock)
    delays = []
    with caplog.at_level(logging.DEBUG, logger="test.link"):
        for _ in range(8):
            link.connected()
            clock.now += 0.5  # dropped long before stable_after
            delays.append(link.lost("connection reset"))
            clock.now += delays[-1]
    assert delays == sorted(delays)
    assert delays[-1] == pytest.approx(60.0, rel=0.21)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "line A: connection reset" in warnings[0].getMessage()
    assert not [r for r in caplog.records if r.levelno == logging.INFO]
    assert link.failing and link.failures == 8 and link.episodes == 1


def test_refused_attempts_grow_the_backoff() -> None:
    clock = Clock()
    link = make(clock)
    delays = [link.attempt_failed("refused") for _ in range(10)]
    assert delays[0] < 1.3 and delays[-1] > 40


def test_a_link_that_stayed_up_starts_a_new_episode_from_the_first_delay(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    link = make(clock)
    for _ in range(5):
        link.attempt_failed("refused")
    link.connected()
    clock.now += 11.0  # stayed up past stable_after
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test.link"):
        delay = link.lost("dropped")
    assert delay < 1.3
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "line A: recovered after 5 failure(s)"
    assert messages[1].startswith("line A: dropped; retrying in")
    assert link.episodes == 2


async def test_recovery_is_logged_once_when_the_link_stays_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    link = LinkRetry(
        logging.getLogger("test.link"), "port X", initial=0.1, maximum=1.0, stable_after=0.05
    )
    link.attempt_failed("missing")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="test.link"):
        link.connected()
        assert link.failures == 1  # not recovered yet: it has to stay up
        await asyncio.sleep(0.1)
    assert link.failures == 0
    assert not link.failing
    assert [r.getMessage() for r in caplog.records] == ["port X: recovered after 1 failure(s)"]
    assert link.backoff.attempts == 0


async def test_a_quick_drop_cancels_the_pending_recovery(caplog: pytest.LogCaptureFixture) -> None:
    link = LinkRetry(
        logging.getLogger("test.link"), "port X", initial=0.1, maximum=1.0, stable_after=0.05
    )
    link.attempt_failed("missing")
    with caplog.at_level(logging.INFO, logger="test.link"):
        link.connected()
        link.lost("dropped")
        await asyncio.sleep(0.1)
    assert link.failing
    assert not [r for r in caplog.records if r.levelno == logging.INFO]
    link.close()


def test_stable_after_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="stable_after"):
        make(Clock(), stable_after=-1)
