"""min_interval's table: throttles per event name and stays bounded whatever names come."""

from __future__ import annotations

import pytest

from edged.adapters.serial.throttle import EventThrottle


def test_one_reading_per_event_per_interval() -> None:
    throttle = EventThrottle(10.0)
    assert throttle.allow("a", 100.0)
    assert not throttle.allow("a", 105.0)
    assert throttle.allow("b", 105.0)  # each event name on its own
    assert not throttle.allow("a", 109.9)
    assert throttle.allow("a", 110.0)
    assert not throttle.allow("a", 119.0)  # the interval counts from the last one published


def test_names_older_than_the_interval_are_forgotten() -> None:
    throttle = EventThrottle(10.0)
    for index in range(500):
        assert throttle.allow(f"name{index}", float(index))
    # Only the names published in the last 10 s can still hold a reading back.
    assert len(throttle) == 10
    assert not throttle.allow("name495", 499.5)


def test_at_most_capacity_names_even_when_all_are_fresh() -> None:
    throttle = EventThrottle(60.0, capacity=100)
    for index in range(10_000):
        throttle.allow(f"n{index}", 1000.0)
    assert len(throttle) == 100
    assert not throttle.allow("n9999", 1001.0)  # the most recent are kept
    assert throttle.allow("n0", 1001.0)  # the oldest was forgotten: it may publish early


def test_a_clock_step_back_still_keeps_it_bounded() -> None:
    throttle = EventThrottle(10.0, capacity=5)
    for index in range(20):
        throttle.allow(f"n{index}", 1000.0 - index * 100)
    assert len(throttle) <= 5


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        EventThrottle(1.0, capacity=0)
