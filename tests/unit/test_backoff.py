"""Backoff grows, respects its ceiling, spreads with jitter, and resets."""

from __future__ import annotations

import random

import pytest

from edged.backoff import Backoff


def test_doubles_to_the_ceiling_without_jitter() -> None:
    backoff = Backoff(initial=1, maximum=10, jitter=0)
    assert [backoff.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    backoff.reset()
    assert backoff.next_delay() == 1


def test_jitter_stays_within_bounds_and_varies() -> None:
    backoff = Backoff(initial=1, maximum=120, jitter=0.2, rng=random.Random(7))
    delays = []
    for attempt in range(12):
        delay = backoff.next_delay()
        base = min(120, 2**attempt)
        assert 0.8 <= delay <= 120
        assert base * 0.8 - 1e-9 <= delay <= min(120, base * 1.2) + 1e-9
        delays.append(delay)
    assert len(set(delays)) > 6


def test_never_busy_loops_after_many_attempts() -> None:
    backoff = Backoff(initial=0.5, maximum=30)
    for _ in range(1000):
        assert backoff.next_delay() >= 0.4


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": 5, "maximum": 1}, {"jitter": 1.0}, {"factor": 0.5}]
)
def test_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]
