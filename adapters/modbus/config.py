"""Config of the Modbus adapter: buses, devices, points and commands (pydantic only, no pymodbus).

Problems local to one key (a type that does not fit its register count, an address past 65535)
are raised by the models' validators, so they point at that key. Problems that span keys or
devices (overlapping points, a unit id used twice on one line, a bus name nobody defined) are
found by :func:`cross_check`, which returns the location of the offending key.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from edged.adapters.base import Loc
from edged.adapters.modbus.codec import (
    MAX_BITS_PER_WRITE,
    MAX_REGISTERS_PER_READ,
    MAX_REGISTERS_PER_WRITE,
    REGISTER_COUNT,
    DataType,
    Order,
)
from edged.adapters.modbus.url import BusUrl, parse_bus_url
from edged.config.types import Duration, FiniteFloat, PositiveDuration, StrictModel
from edged.config.yamlsource import format_loc

Kind = Literal["holding", "input", "coil", "discrete"]
REGISTER_KINDS = frozenset({"holding", "input"})

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}")


def _check_url(value: str) -> str:
    parse_bus_url(value)
    return value


BusUrlText = Annotated[str, AfterValidator(_check_url)]
"""A bus URL (see :mod:`edged.adapters.modbus.url`), checked when the config loads."""


def _check_name(value: str) -> str:
    if not _NAME_RE.fullmatch(value):
        raise ValueError(
            "a name is 1-128 characters of A-Z a-z 0-9 - _ . and starts with a letter or digit"
        )
    return value


PointName = Annotated[str, AfterValidator(_check_name)]


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise ValueError("must be a finite number")
    return value


def _nonzero_finite(value: float) -> float:
    if not math.isfinite(value) or value == 0:
        raise ValueError("must be a finite number other than 0")
    return value


class _Target(StrictModel):
    """Where a value lives and how it is encoded. Fields validate in this order."""

    kind: Kind = "holding"
    type: DataType | None = Field(default=None, validate_default=True)
    count: int | None = Field(default=None, ge=1, le=MAX_REGISTERS_PER_READ, validate_default=True)
    address: int = Field(ge=0, le=65535)
    word_order: Order | None = None  # the device's word_order when not given
    byte_order: Order | None = None  # the device's byte_order when not given
    scale: Annotated[float, AfterValidator(_nonzero_finite)] = 1.0
    offset: Annotated[float, AfterValidator(_finite)] = 0.0

    @field_validator("type")
    @classmethod
    def _type_fits_kind(cls, value: DataType | None, info: ValidationInfo) -> DataType | None:
        kind = info.data.get("kind")
        if kind is None:
            return value
        if kind in REGISTER_KINDS:
            if value is None:
                return DataType.UINT16
            if value is DataType.BOOL:
                raise ValueError("bool is for coils and discrete inputs; use type: bits, bit: N")
            return value
        if value not in (None, DataType.BOOL):
            raise ValueError(f"a {kind} is one bit: its type is bool")
        return DataType.BOOL

    @field_validator("count")
    @classmethod
    def _count_fits_type(cls, value: int | None, info: ValidationInfo) -> int | None:
        data_type = info.data.get("type")
        if data_type is None:
            return value
        if data_type is DataType.BOOL:
            if value not in (None, 1):
                raise ValueError("a coil or discrete input point is one bit; count must be 1")
            return 1
        if data_type is DataType.STRING:
            if value is None:
                raise ValueError("a string needs count: the number of registers it spans")
            return value
        needed = REGISTER_COUNT[data_type]
        if value is not None and value != needed:
            raise ValueError(f"{data_type} takes {needed} register(s), not {value}")
        return needed

    @field_validator("address")
    @classmethod
    def _address_in_range(cls, value: int, info: ValidationInfo) -> int:
        count = info.data.get("count")
        if count is not None and value + count - 1 > 65535:
            raise ValueError(f"address {value} + {count} registers runs past address 65535")
        return value

    @property
    def data_type(self) -> DataType:
        """The validated type (never ``None`` after validation)."""
        assert self.type is not None
        return self.type

    @property
    def size(self) -> int:
        """Registers (or bits, for coils and discrete inputs) this target occupies."""
        assert self.count is not None
        return self.count

    @property
    def is_bits(self) -> bool:
        """True for coils and discrete inputs."""
        return self.kind not in REGISTER_KINDS

    @property
    def numeric(self) -> bool:
        """True when scale and offset apply."""
        return self.data_type not in (DataType.STRING, DataType.BOOL, DataType.BITS)


class PointConfig(_Target):
    """One value read from a device (a ``points:`` entry)."""

    bit: int | None = Field(default=None, ge=0, le=15)
    width: int = Field(default=1, ge=1, le=16)
    decimals: int | None = Field(default=None, ge=0, le=12)
    unit: str | None = Field(default=None, max_length=32)
    interval: Duration | None = None
    deadband: FiniteFloat | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bits_and_scaling(self) -> PointConfig:
        if self.type is DataType.BITS:
            if self.bit is None:
                raise ValueError("a bits point needs bit: the lowest bit of the field (0-15)")
            if self.bit + self.width > 16:
                raise ValueError(f"bit {self.bit} + width {self.width} runs past bit 15")
        elif self.bit is not None or self.width != 1:
            raise ValueError("bit and width are only for type: bits")
        if not self.numeric and (self.scale != 1 or self.offset != 0 or self.decimals is not None):
            raise ValueError(f"scale, offset and decimals apply to numbers, not to {self.type}")
        if self.deadband is not None and not self.numeric:
            raise ValueError("a deadband applies to numbers; other types report every change")
        return self


class CommandConfig(_Target):
    """One command that writes a value (a ``commands:`` entry); the payload is ``{"value": X}``."""

    kind: Literal["holding", "coil"] = "holding"
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None
    function: Literal["auto", "single", "multiple"] = "auto"

    @model_validator(mode="after")
    def _writable(self) -> CommandConfig:
        if self.type is DataType.BITS:
            raise ValueError("bit fields cannot be written (it would need a read-modify-write)")
        if self.function == "single" and self.kind == "holding" and self.size != 1:
            raise ValueError(f"function: single writes one register; {self.type} needs {self.size}")
        if self.kind == "holding" and self.size > MAX_REGISTERS_PER_WRITE:
            raise ValueError(f"one write carries at most {MAX_REGISTERS_PER_WRITE} registers")
        if self.kind == "coil" and self.size > MAX_BITS_PER_WRITE:  # pragma: no cover - count is 1
            raise ValueError(f"one write carries at most {MAX_BITS_PER_WRITE} coils")
        if (self.min is not None or self.max is not None) and not self.numeric:
            raise ValueError(f"min and max apply to numbers, not to {self.type}")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        if not self.numeric and (self.scale != 1 or self.offset != 0):
            raise ValueError(f"scale and offset apply to numbers, not to {self.type}")
        return self


class DeviceConfig(StrictModel):
    """The ``modbus:`` section of a device: where it is, what to read, what commands write."""

    bus: str | None = None  # a bus defined under adapters.modbus.buses, or
    url: BusUrlText | None = None  # a bus URL (a bus with default settings)
    unit: int = Field(default=1, ge=0, le=255)
    interval: Duration = 5.0  # 0 polls back to back
    timeout: PositiveDuration | None = None  # overrides the bus's timeout for this device
    word_order: Order = Order.BIG
    byte_order: Order = Order.BIG
    max_registers: int = Field(default=MAX_REGISTERS_PER_READ, ge=1, le=MAX_REGISTERS_PER_READ)
    max_bits: int = Field(default=2000, ge=1, le=2000)
    max_gap: int = Field(default=8, ge=0, le=MAX_REGISTERS_PER_READ - 2)
    max_bit_gap: int = Field(default=64, ge=0, le=1998)
    report: Literal["all", "changes"] = "all"
    full_report_every: PositiveDuration | None = None
    points: dict[PointName, PointConfig] = Field(default_factory=dict)
    commands: dict[PointName, CommandConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _where_and_what(self) -> DeviceConfig:
        if (self.bus is None) == (self.url is None):
            raise ValueError("give either bus (a name under adapters.modbus.buses) or url")
        if not self.points and not self.commands:
            raise ValueError("a device needs points to read or commands to write")
        return self

    def word_order_of(self, target: _Target) -> Order:
        """The target's word order, or the device's."""
        return target.word_order or self.word_order

    def byte_order_of(self, target: _Target) -> Order:
        """The target's byte order, or the device's."""
        return target.byte_order or self.byte_order


class BusConfig(StrictModel):
    """One physical line and how to use it (an ``adapters.modbus.buses`` entry)."""

    url: BusUrlText
    timeout: PositiveDuration = 0.5  # response timeout; serial lines add the frames' wire time
    retries: int = Field(default=1, ge=0, le=5)  # per request, while the device answers
    inter_frame_delay: Literal["auto"] | Duration = "auto"  # silence before each request
    connect_timeout: PositiveDuration = 3.0
    reconnect_max: PositiveDuration = 60.0  # ceiling of the reconnect backoff
    quarantine_max: PositiveDuration = 60.0  # ceiling of the probe backoff of a silent device

    @property
    def parsed_url(self) -> BusUrl:
        """The parsed URL."""
        return parse_bus_url(self.url)

    @property
    def frame_delay(self) -> float:
        """Seconds of silence before each request (``auto``: 3.5 characters on serial lines)."""
        if self.inter_frame_delay == "auto":
            return self.parsed_url.frame_gap
        return float(self.inter_frame_delay)


class Settings(StrictModel):
    """The ``adapters: modbus:`` block."""

    buses: dict[PointName, BusConfig] = Field(default_factory=dict)


def resolve_bus(section: DeviceConfig, settings: Settings) -> BusConfig | None:
    """The bus a device sits on: its named bus, or a default bus for its ``url``."""
    if section.bus is not None:
        return settings.buses.get(section.bus)
    assert section.url is not None
    for bus in settings.buses.values():
        if bus.parsed_url == parse_bus_url(section.url):
            return bus
    return BusConfig(url=section.url)


@dataclass(frozen=True)
class _Span:
    name: str
    kind: str
    start: int
    end: int  # inclusive
    bits: tuple[int, int] | None  # (first bit, width) of a bit field, else None


def _span(name: str, point: PointConfig) -> _Span:
    bits = (point.bit or 0, point.width) if point.type is DataType.BITS else None
    return _Span(name, point.kind, point.address, point.address + point.size - 1, bits)


def _overlap(a: _Span, b: _Span) -> bool:
    if a.kind != b.kind or a.end < b.start or b.end < a.start:
        return False
    if a.bits is not None and b.bits is not None:  # two fields of one register
        return a.bits[0] < b.bits[0] + b.bits[1] and b.bits[0] < a.bits[0] + a.bits[1]
    return True


def device_problems(section: DeviceConfig) -> Iterable[tuple[Loc, str]]:
    """Problems spanning several keys of one device, located relative to its section."""
    spans: list[_Span] = []
    for name, point in section.points.items():
        span = _span(name, point)
        for other in spans:
            if _overlap(span, other):
                yield (
                    ("points", name, "address"),
                    f"overlaps point {other.name!r} ({other.kind} {other.start}..{other.end})",
                )
                break
        spans.append(span)
        limit = section.max_bits if point.is_bits else section.max_registers
        if point.size > limit:
            yield (
                ("points", name, "count"),
                f"needs {point.size} registers but the device reads at most {limit} per request",
            )
        if point.interval is not None and point.interval < section.interval:
            yield (
                ("points", name, "interval"),
                f"cannot be shorter than the device's interval ({section.interval:g}s)",
            )
        if point.deadband is not None and section.report != "changes":
            yield (("points", name, "deadband"), "a deadband needs report: changes on the device")
    if section.full_report_every is not None and section.report != "changes":
        yield (("full_report_every",), "only applies with report: changes")


def cross_check(
    devices: Sequence[tuple[Loc, DeviceConfig]], settings: Settings
) -> Iterable[tuple[Loc, str]]:
    """Problems spanning devices and buses: undefined bus names, lines defined twice, unit ids
    shared on one line, and each device's own multi-key problems."""
    problems: list[tuple[Loc, str]] = []
    lines: dict[tuple[str, str], tuple[BusConfig, Loc]] = {}
    for name, bus in settings.buses.items():
        key = bus.parsed_url.line_key
        if key in lines:
            where = format_loc(lines[key][1])
            problems.append(
                (("adapters", "modbus", "buses", name, "url"), f"the same line as bus at {where}")
            )
            continue
        lines[key] = (bus, ("adapters", "modbus", "buses", name))
    units: dict[tuple[tuple[str, str], int], Loc] = {}
    for loc, section in devices:
        base: Loc = (*loc, "modbus")
        problems.extend(((*base, *where), message) for where, message in device_problems(section))
        if section.bus is not None and section.bus not in settings.buses:
            known = ", ".join(settings.buses) or "none defined"
            problems.append(((*base, "bus"), f"no bus named {section.bus!r} (known: {known})"))
            continue
        resolved = resolve_bus(section, settings)
        assert resolved is not None
        url = resolved.parsed_url
        if section.url is not None:
            defined = lines.get(url.line_key)
            if defined is None:
                lines[url.line_key] = (resolved, (*base, "url"))
            elif defined[0].parsed_url != url:
                problems.append(
                    (
                        (*base, "url"),
                        f"this line is already set up differently at {format_loc(defined[1])} "
                        f"({defined[0].parsed_url})",
                    )
                )
                continue
        if url.is_serial and not 1 <= section.unit <= 247:
            message = "a unit id on a serial line is 1..247 (0 is broadcast)"
            problems.append(((*base, "unit"), message))
            continue
        unit_key = (url.line_key, section.unit)
        if unit_key in units:
            problems.append(
                (
                    (*base, "unit"),
                    f"unit {section.unit} on {url} is already used by "
                    f"{format_loc(units[unit_key])}",
                )
            )
            continue
        units[unit_key] = loc
    return problems
