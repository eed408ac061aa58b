"""Location updates (``device/update/location``, PROTOCOL.md 4.6): what to send, and when.

A fixed location from the config is sent once per manage; a moving one (a GPS device's fixes,
via :class:`~edged.adapters.base.LocationBoard`) goes through a :class:`LocationTracker`,
which sends a fix only when it is meaningful and not too often:

* the first fix is sent at once;
* a fix less than ``min_distance`` metres (great-circle) from the last fix *sent* is not
  news: nothing is sent, and a fix deferred earlier is dropped (the device is back near
  where the platform believes it is);
* a fix that moved far enough within ``min_interval`` seconds of the last send is deferred:
  only the latest such fix is kept, and :meth:`LocationTracker.due` gives it once the
  interval has passed;
* otherwise it is sent at once.

Fixes with a latitude or longitude that is not a finite WGS84 value are ignored.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from edged.adapters.base import Location
from edged.codec import iso_time
from edged.config.management import LocationConfig
from edged.model import JSONValue

EARTH_RADIUS = 6_371_008.8
"""The mean Earth radius in metres (IUGG), for great-circle distances."""


def location_body(fix: Location, now_wall: float) -> dict[str, JSONValue]:
    """The ``d`` of a location update: each update is complete, so every known value is in it.

    ``measuredDateTime`` only when the fix says when it was measured (else the platform uses
    the time of receipt); ``updatedDateTime`` is ``now_wall`` (epoch seconds).
    """
    body: dict[str, JSONValue] = {"latitude": fix.latitude, "longitude": fix.longitude}
    if fix.elevation is not None and math.isfinite(fix.elevation):
        body["elevation"] = fix.elevation
    if fix.accuracy is not None and math.isfinite(fix.accuracy):
        body["accuracy"] = fix.accuracy
    if fix.measured_at is not None:
        body["measuredDateTime"] = iso_time(fix.measured_at)
    body["updatedDateTime"] = iso_time(now_wall)
    return body


def fix_from_config(config: LocationConfig) -> Location:
    """The configured fixed location as a fix (no measurement time)."""
    return Location(
        latitude=config.latitude,
        longitude=config.longitude,
        elevation=config.elevation,
        accuracy=config.accuracy,
    )


def distance(a: Location, b: Location) -> float:
    """Great-circle (haversine) distance in metres between two fixes; elevation is ignored."""
    lat1, lat2 = math.radians(a.latitude), math.radians(b.latitude)
    dlat = lat2 - lat1
    dlon = math.radians(b.longitude - a.longitude)
    h = math.sin(dlat / 2) ** 2 + math.cos(lat1) * math.cos(lat2) * math.sin(dlon / 2) ** 2
    return 2 * EARTH_RADIUS * math.asin(min(1.0, math.sqrt(h)))


def _valid(fix: Location) -> bool:
    return (
        math.isfinite(fix.latitude)
        and math.isfinite(fix.longitude)
        and -90.0 <= fix.latitude <= 90.0
        and -180.0 <= fix.longitude <= 180.0
    )


class LocationTracker:
    """Decides which of a moving device's fixes become location updates (see the module doc).

    ``clock`` (monotonic seconds) times the interval; ``wall`` (epoch seconds) stamps
    ``updatedDateTime``. Not thread-safe: owned by the event loop.
    """

    def __init__(
        self,
        *,
        min_distance: float,
        min_interval: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.min_distance = min_distance
        self.min_interval = min_interval
        self._clock = clock
        self._wall = wall
        self._sent: Location | None = None
        self._sent_at = 0.0
        self._deferred: Location | None = None

    def offer(self, fix: Location) -> dict[str, JSONValue] | None:
        """The body to send now for ``fix``, or None (not news, invalid, or deferred)."""
        if not _valid(fix):
            return None
        if self._sent is not None:
            if distance(self._sent, fix) < self.min_distance:
                self._deferred = None
                return None
            if self._clock() - self._sent_at < self.min_interval:
                self._deferred = fix
                return None
        return self._send(fix)

    def due(self) -> dict[str, JSONValue] | None:
        """The deferred fix's body once ``min_interval`` has passed since the last send."""
        if self._deferred is None or self._clock() < self._sent_at + self.min_interval:
            return None
        return self._send(self._deferred)

    def next_due(self) -> float | None:
        """The clock time from which :meth:`due` gives a body; None when nothing is deferred."""
        return None if self._deferred is None else self._sent_at + self.min_interval

    def _send(self, fix: Location) -> dict[str, JSONValue]:
        self._sent = fix
        self._sent_at = self._clock()
        self._deferred = None
        return location_body(fix, self._wall())
