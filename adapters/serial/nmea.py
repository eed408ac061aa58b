"""NMEA 0183: sentence checksums, the GGA, RMC, GSA, VTG and GLL sentences, and fix assembly.

Pure code. :func:`parse_sentence` checks the framing and checksum of one sentence;
:func:`decode` turns a known sentence into named values (SI units: metres, metres per second,
degrees); :class:`FixTracker` merges the sentences of one receiver epoch into one :class:`Fix`.
"""

from __future__ import annotations

import calendar
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
KNOTS_TO_MS = 1852.0 / 3600.0
KMH_TO_MS = 1.0 / 3.6


class NmeaError(ValueError):
    """A sentence is malformed or carries invalid values."""


class ChecksumError(NmeaError):
    """A sentence's checksum is missing (when required) or wrong."""


@dataclass(frozen=True, slots=True)
class Sentence:
    """One checked sentence: ``talker`` (``GP``, ``GN``...), ``kind`` (``GGA``...) and fields."""

    talker: str
    kind: str
    fields: tuple[str, ...]


def checksum(body: bytes) -> int:
    """The XOR of every byte between ``$`` and ``*``."""
    value = 0
    for byte in body:
        value ^= byte
    return value


def build_sentence(body: str) -> str:
    """``$<body>*HH`` with the checksum filled in (for tests and simulators)."""
    return f"${body}*{checksum(body.encode('ascii')):02X}"


def parse_sentence(frame: bytes, *, require_checksum: bool = True) -> Sentence:
    """Check and split one sentence (``$GPGGA,...*47``, surrounding whitespace allowed).

    Raises :class:`ChecksumError` if the checksum is wrong, or missing while
    ``require_checksum``; :class:`NmeaError` for anything else malformed.
    """
    frame = frame.strip()
    if len(frame) < 6 or frame[0] not in b"$!":
        raise NmeaError("not an NMEA sentence (must start with $ or !)")
    star = frame.rfind(b"*")
    if star >= 0:
        body = frame[1:star]
        given = frame[star + 1 :]
        if len(given) != 2 or not all(char in _HEX_DIGITS for char in given):
            raise ChecksumError(f"checksum field {given!r} is not two hex digits")
        if checksum(body) != int(given, 16):
            raise ChecksumError(
                f"checksum mismatch: computed {checksum(body):02X}, got {given.decode()}"
            )
    elif require_checksum:
        raise ChecksumError("sentence has no checksum")
    else:
        body = frame[1:]
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise NmeaError("sentence holds non-ASCII bytes") from None
    parts = text.split(",")
    address = parts[0]
    if len(address) < 3 or not address.isalnum():
        raise NmeaError(f"bad sentence address {address!r}")
    if address[0] == "P":  # proprietary: P + manufacturer code, no talker
        return Sentence("P", address[1:], tuple(parts[1:]))
    return Sentence(address[:2], address[2:], tuple(parts[1:]))


def _float(text: str, what: str) -> float | None:
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise NmeaError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise NmeaError(f"{what} {text!r} is not a finite number")
    return value


def _int(text: str, what: str) -> int | None:
    if not text:
        return None
    if not text.isdigit():
        raise NmeaError(f"{what} {text!r} is not an integer")
    return int(text)


def _coordinate(value: str, hemisphere: str, degree_digits: int, limit: float) -> float | None:
    """``ddmm.mmmm`` (``dddmm.mmmm`` for longitude) plus N/S/E/W -> signed decimal degrees."""
    if not value:
        return None  # no fix yet (some receivers still fill in the hemisphere)
    if hemisphere not in ("N", "S", "E", "W") or len(value) < degree_digits + 2:
        raise NmeaError(f"bad coordinate {value!r} {hemisphere!r}")
    if not value[:degree_digits].isdigit():
        raise NmeaError(f"bad coordinate {value!r}")
    degrees = int(value[:degree_digits])
    minutes = _float(value[degree_digits:], "coordinate minutes")
    if minutes is None or not 0 <= minutes < 60:
        raise NmeaError(f"bad coordinate minutes in {value!r}")
    result = degrees + minutes / 60.0
    if result > limit:
        raise NmeaError(f"coordinate {value!r} out of range")
    return round(-result if hemisphere in ("S", "W") else result, 8)


def _time_of_day(text: str) -> float | None:
    """``hhmmss`` or ``hhmmss.sss`` -> seconds since midnight UTC."""
    if not text:
        return None
    if len(text) < 6 or not text[:6].isdigit():
        raise NmeaError(f"bad UTC time {text!r}")
    hours, minutes = int(text[0:2]), int(text[2:4])
    seconds = _float(text[4:], "UTC seconds")
    if hours > 23 or minutes > 59 or seconds is None or not 0 <= seconds < 61:
        raise NmeaError(f"bad UTC time {text!r}")
    return hours * 3600 + minutes * 60 + seconds


def _date(text: str) -> tuple[int, int, int] | None:
    """``ddmmyy`` -> (year, month, day); two-digit years are 2000-2099 (1980-1999 for 80-99)."""
    if not text:
        return None
    if len(text) != 6 or not text.isdigit():
        raise NmeaError(f"bad date {text!r}")
    day, month, year = int(text[0:2]), int(text[2:4]), int(text[4:6])
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(2000 + year, month)[1]:
        raise NmeaError(f"bad date {text!r}")
    return (1900 + year if year >= 80 else 2000 + year, month, day)


def _field(fields: tuple[str, ...], index: int) -> str:
    return fields[index] if index < len(fields) else ""


def _need(fields: tuple[str, ...], count: int, kind: str) -> None:
    if len(fields) < count:
        raise NmeaError(f"{kind} sentence has {len(fields)} fields, expected at least {count}")


def _drop_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def decode_gga(fields: tuple[str, ...]) -> dict[str, Any]:
    """Fix data: time, position, fix quality, satellites in use, HDOP, altitude (MSL)."""
    _need(fields, 9, "GGA")
    quality = _int(fields[5], "fix quality")
    return _drop_none(
        {
            "utc_seconds": _time_of_day(fields[0]),
            "latitude": _coordinate(fields[1], fields[2], 2, 90.0),
            "longitude": _coordinate(fields[3], fields[4], 3, 180.0),
            "fix_quality": quality,
            "satellites": _int(fields[6], "satellite count"),
            "hdop": _float(fields[7], "HDOP"),
            "altitude": _float(fields[8], "altitude"),
            "geoid_separation": _float(_field(fields, 10), "geoid separation"),
        }
    )


def decode_rmc(fields: tuple[str, ...]) -> dict[str, Any]:
    """Recommended minimum: time, status, position, speed over ground, course, date."""
    _need(fields, 9, "RMC")
    status = fields[1]
    if status not in ("A", "V"):
        raise NmeaError(f"bad RMC status {status!r}")
    speed = _float(fields[6], "speed")
    return _drop_none(
        {
            "utc_seconds": _time_of_day(fields[0]),
            "status_valid": status == "A",
            "latitude": _coordinate(fields[2], fields[3], 2, 90.0),
            "longitude": _coordinate(fields[4], fields[5], 3, 180.0),
            "speed": None if speed is None else round(speed * KNOTS_TO_MS, 4),
            "course": _float(fields[7], "course"),
            "date": _date(fields[8]),
        }
    )


def decode_gsa(fields: tuple[str, ...]) -> dict[str, Any]:
    """DOP and active satellites: fix mode (1 none, 2 2D, 3 3D), PDOP, HDOP, VDOP."""
    _need(fields, 17, "GSA")
    mode = _int(fields[1], "fix mode")
    if mode is not None and mode not in (1, 2, 3):
        raise NmeaError(f"bad GSA fix mode {mode}")
    used = [int(prn) for prn in fields[2:14] if prn.isdigit()]
    return _drop_none(
        {
            "fix_mode": mode,
            "satellites_used": len(used),
            "pdop": _float(fields[14], "PDOP"),
            "hdop": _float(fields[15], "HDOP"),
            "vdop": _float(fields[16], "VDOP"),
        }
    )


def decode_vtg(fields: tuple[str, ...]) -> dict[str, Any]:
    """Course and speed over ground."""
    _need(fields, 7, "VTG")
    kmh = _float(fields[6], "speed")
    return _drop_none(
        {
            "course": _float(fields[0], "course"),
            "speed": None if kmh is None else round(kmh * KMH_TO_MS, 4),
        }
    )


def decode_gll(fields: tuple[str, ...]) -> dict[str, Any]:
    """Geographic position: latitude, longitude, time, status."""
    _need(fields, 5, "GLL")
    return _drop_none(
        {
            "latitude": _coordinate(fields[0], fields[1], 2, 90.0),
            "longitude": _coordinate(fields[2], fields[3], 3, 180.0),
            "utc_seconds": _time_of_day(fields[4]),
            "status_valid": _field(fields, 5) == "A" if len(fields) > 5 else None,
        }
    )


DECODERS: dict[str, Callable[[tuple[str, ...]], dict[str, Any]]] = {
    "GGA": decode_gga,
    "RMC": decode_rmc,
    "GSA": decode_gsa,
    "VTG": decode_vtg,
    "GLL": decode_gll,
}
"""The sentence kinds this module decodes."""


def decode(sentence: Sentence) -> dict[str, Any]:
    """Named values of a known sentence; raises :class:`NmeaError` on bad values or kinds."""
    decoder = DECODERS.get(sentence.kind)
    if decoder is None:
        raise NmeaError(f"unsupported sentence {sentence.kind}")
    return decoder(sentence.fields)


def format_utc(seconds: float) -> str:
    """Seconds since midnight -> ``hh:mm:ss.sss``."""
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole % 3600 // 60:02d}:{seconds % 60:06.3f}"


@dataclass
class Fix:
    """A receiver epoch's merged position report."""

    latitude: float | None = None
    longitude: float | None = None
    altitude: float | None = None
    fix_quality: int | None = None
    fix_mode: int | None = None
    satellites: int | None = None
    hdop: float | None = None
    pdop: float | None = None
    vdop: float | None = None
    speed: float | None = None
    course: float | None = None
    status_valid: bool | None = None
    utc_seconds: float | None = None
    date: tuple[int, int, int] | None = None

    @property
    def valid(self) -> bool:
        """Has a position that the receiver itself says is a fix."""
        if self.latitude is None or self.longitude is None:
            return False
        if self.fix_quality is not None and self.fix_quality == 0:
            return False
        if self.status_valid is False:
            return False
        return self.fix_quality is not None or self.status_valid is True

    @property
    def epoch(self) -> float | None:
        """The fix time as Unix seconds, when both date and time are known."""
        if self.date is None or self.utc_seconds is None:
            return None
        year, month, day = self.date
        return calendar.timegm((year, month, day, 0, 0, 0)) + self.utc_seconds

    def values(self) -> dict[str, Any]:
        """The fix as reading values: only what is known, plus ``valid`` and ``time``."""
        out: dict[str, Any] = {"valid": self.valid}
        for name in (
            "latitude",
            "longitude",
            "altitude",
            "fix_quality",
            "fix_mode",
            "satellites",
            "hdop",
            "pdop",
            "vdop",
            "speed",
            "course",
        ):
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        if self.utc_seconds is not None:
            if self.date is not None:
                year, month, day = self.date
                out["time"] = f"{year:04d}-{month:02d}-{day:02d}T{format_utc(self.utc_seconds)}Z"
            else:
                out["time"] = format_utc(self.utc_seconds)
        return out


_EPOCH_KINDS = ("GGA", "RMC")


@dataclass
class FixTracker:
    """Merges GGA, RMC and GSA (and VTG, GLL) into one :class:`Fix` per receiver epoch.

    An epoch is the set of sentences carrying one UTC time. It is complete when every epoch
    sentence kind (GGA, RMC) this receiver has sent so far has arrived for that time, so a
    receiver sending only GGA gets a fix per GGA without delay. An epoch left incomplete is
    flushed when the time moves on. GSA, VTG and GLL carry no time (GLL's is optional) and are
    merged into the epoch in progress; GSA's DOP values stick until the next GSA. The date
    from RMC sticks too, so GGA-only epochs still get a full timestamp. A kind repeating within
    an epoch also starts a new one (receivers without a fix may send empty times).
    """

    _kinds_seen: set[str] = field(default_factory=set)
    _current: Fix | None = None
    _current_time: float | None = None
    _current_kinds: set[str] = field(default_factory=set)
    _emitted: bool = False
    _sticky: dict[str, Any] = field(default_factory=dict)

    def update(self, kind: str, values: dict[str, Any]) -> list[Fix]:
        """Add one decoded sentence; return the fixes it completed (zero, one or two)."""
        done: list[Fix] = []
        if kind == "GSA":
            self._sticky.update({k: values.get(k) for k in ("fix_mode", "pdop", "hdop", "vdop")})
            if self._current is not None and not self._emitted:
                self._merge(values)
            return done
        if kind not in _EPOCH_KINDS:
            if self._current is not None and not self._emitted:
                self._merge({k: v for k, v in values.items() if k != "utc_seconds"})
            return done
        if "date" in values:
            self._sticky["date"] = values["date"]
        when = values.get("utc_seconds")
        if self._current is None or when != self._current_time or kind in self._current_kinds:
            if self._current is not None and not self._emitted:
                done.append(self._current)
            self._current = Fix(**{k: v for k, v in self._sticky.items() if v is not None})
            self._current_time = when
            self._current_kinds = set()
            self._emitted = False
        elif self._emitted:
            self._kinds_seen.add(kind)
            return done
        self._kinds_seen.add(kind)
        self._current_kinds.add(kind)
        self._merge(values)
        if self._current_kinds >= self._kinds_seen:
            done.append(self._current)
            self._emitted = True
        return done

    def _merge(self, values: dict[str, Any]) -> None:
        assert self._current is not None
        for key, value in values.items():
            if hasattr(self._current, key):
                setattr(self._current, key, value)
