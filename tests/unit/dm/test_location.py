"""Location updates: the body, and which fixes a tracker sends when (fake clocks)."""

from __future__ import annotations

import math

import pytest

from edged.adapters.base import Location
from edged.config.management import LocationConfig
from edged.dm.location import LocationTracker, distance, fix_from_config, location_body

WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z
HOME = Location(latitude=48.137154, longitude=11.576124)
# About 111 m per 0.001 degree of latitude.
NEAR = Location(latitude=48.137154 + 0.00005, longitude=11.576124)  # ~5.6 m
FAR = Location(latitude=48.138154, longitude=11.576124)  # ~111 m
FARTHER = Location(latitude=48.139154, longitude=11.576124)  # ~222 m


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tracker(
    clock: Clock, min_distance: float = 10.0, min_interval: float = 60.0
) -> LocationTracker:
    return LocationTracker(
        min_distance=min_distance,
        min_interval=min_interval,
        clock=clock,
        wall=lambda: WALL + clock.now,
    )


def test_body_full_and_minimal() -> None:
    fix = Location(48.1, 11.5, elevation=520.5, accuracy=3.0, measured_at=WALL)
    assert location_body(fix, WALL + 1.5) == {
        "latitude": 48.1,
        "longitude": 11.5,
        "elevation": 520.5,
        "accuracy": 3.0,
        "measuredDateTime": "2027-01-15T08:00:00.000Z",
        "updatedDateTime": "2027-01-15T08:00:01.500Z",
    }
    assert location_body(Location(-33.9, 151.2), WALL) == {
        "latitude": -33.9,
        "longitude": 151.2,
        "updatedDateTime": "2027-01-15T08:00:00.000Z",
    }
    assert "elevation" not in location_body(Location(1.0, 2.0, elevation=math.nan), WALL)


def test_fix_from_config() -> None:
    config = LocationConfig(latitude=52.5, longitude=13.4, elevation=34.0)
    assert fix_from_config(config) == Location(52.5, 13.4, elevation=34.0)


def test_distance() -> None:
    assert distance(HOME, HOME) == 0.0
    assert distance(HOME, FAR) == pytest.approx(111.2, abs=0.5)
    # A quarter of the equator.
    assert distance(Location(0, 0), Location(0, 90)) == pytest.approx(10_007_557, abs=1)
    assert distance(Location(0, 179.9999), Location(0, -179.9999)) < 25


def test_first_fix_is_sent_at_once() -> None:
    clock = Clock()
    body = tracker(clock).offer(HOME)
    assert body is not None
    assert body["latitude"] == HOME.latitude


def test_small_moves_are_not_news() -> None:
    clock = Clock()
    t = tracker(clock)
    t.offer(HOME)
    clock.now += 3600
    assert t.offer(NEAR) is None
    assert t.due() is None
    assert t.next_due() is None


def test_far_move_after_the_interval_is_sent_at_once() -> None:
    clock = Clock()
    t = tracker(clock)
    t.offer(HOME)
    clock.now += 60
    body = t.offer(FAR)
    assert body is not None
    assert body["latitude"] == FAR.latitude
    # Distance counts from the last fix sent: FAR is now the reference.
    clock.now += 60
    assert t.offer(FAR) is None


def test_far_moves_within_the_interval_are_deferred_and_the_latest_sent() -> None:
    clock = Clock()
    t = tracker(clock)
    t.offer(HOME)
    clock.now += 10
    assert t.offer(FAR) is None
    assert t.next_due() == 1060.0
    clock.now += 10
    assert t.offer(FARTHER) is None
    assert t.due() is None  # not yet
    clock.now = 1059.9
    assert t.due() is None
    clock.now = 1060.0
    body = t.due()
    assert body is not None
    assert body["latitude"] == FARTHER.latitude
    assert body["updatedDateTime"] == location_body(FARTHER, WALL + 1060.0)["updatedDateTime"]
    assert t.due() is None
    assert t.next_due() is None
    # The interval now counts from that send.
    clock.now += 30
    assert t.offer(HOME) is None
    assert t.next_due() == 1120.0


def test_coming_back_drops_the_deferred_fix() -> None:
    clock = Clock()
    t = tracker(clock)
    t.offer(HOME)
    clock.now += 5
    assert t.offer(FAR) is None
    clock.now += 5
    assert t.offer(NEAR) is None  # back near what the platform knows
    assert t.next_due() is None
    clock.now += 600
    assert t.due() is None


def test_zero_distance_and_interval_send_every_fix() -> None:
    clock = Clock()
    t = tracker(clock, min_distance=0.0, min_interval=0.0)
    assert t.offer(HOME) is not None
    assert t.offer(HOME) is not None


@pytest.mark.parametrize(
    "fix",
    [
        Location(math.nan, 11.0),
        Location(48.0, math.inf),
        Location(91.0, 11.0),
        Location(48.0, -180.5),
    ],
)
def test_invalid_fixes_are_ignored(fix: Location) -> None:
    clock = Clock()
    t = tracker(clock)
    assert t.offer(fix) is None
    assert t.offer(HOME) is not None
