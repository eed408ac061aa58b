"""Declarative payload layouts: bytes to named values and command values to bytes. Pure code.

A layout is the ``fields`` mapping of the config (offset, type, endianness, scale). It is compiled
once into :class:`Layout`, whose :meth:`~Layout.decode` is the per-advert hot path: one
``struct.unpack_from`` (or ``int.from_bytes`` for 24-bit values) per field.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from edged.adapters.ble.config import FLOAT_TYPES, INTEGER_TYPES, Encoding, FieldSpec
from edged.model import JSONValue

_STRUCT_CODES = {1: "b", 2: "h", 4: "i", 8: "q"}
_FLOAT_CODES = {2: "e", 4: "f", 8: "d"}


class LayoutError(ValueError):
    """The payload does not fit the layout (too short), or a value cannot be encoded."""


def _byte_order(spec: Encoding) -> str:
    return "<" if spec.endian == "little" else ">"


def _raw_reader(spec: Encoding) -> Callable[[bytes, int], JSONValue]:
    """A function reading the raw (unscaled) value at an offset."""
    size = spec.size
    if spec.type in INTEGER_TYPES:
        signed = INTEGER_TYPES[spec.type][1]
        if size == 3:
            order = spec.endian

            def read_int24(data: bytes, offset: int) -> JSONValue:
                return int.from_bytes(data[offset : offset + 3], order, signed=signed)

            return read_int24
        code = _STRUCT_CODES[size]
        unpack = struct.Struct(_byte_order(spec) + (code if signed else code.upper())).unpack_from
    elif spec.type in FLOAT_TYPES:
        unpack = struct.Struct(_byte_order(spec) + _FLOAT_CODES[size]).unpack_from
    elif spec.type == "bool":
        return lambda data, offset: data[offset] != 0
    elif spec.type == "hex":
        return lambda data, offset: data[offset : offset + size].hex()
    else:  # string: UTF-8, cut at the first NUL, undecodable bytes replaced
        return lambda data, offset: (
            data[offset : offset + size].split(b"\0", 1)[0].decode("utf-8", "replace")
        )
    return lambda data, offset: unpack(data, offset)[0]


_UNSCALED = ("string", "hex", "bool")


def _places(number: float) -> int:
    """Decimal places needed to write ``number`` exactly as a short decimal (at most 12)."""
    text = f"{abs(number):.12f}".rstrip("0")
    return len(text.split(".")[1]) if "." in text else 0


def _scaled(spec: FieldSpec) -> Callable[[bytes, int], JSONValue]:
    read = _raw_reader(spec)
    if spec.bit is not None:
        mask = 1 << spec.bit
        return lambda data, offset: bool(read(data, offset) & mask)
    if spec.type in _UNSCALED:
        return read
    scale, add = spec.scale, spec.add
    plain = scale == 1.0 and add == 0.0
    is_float = spec.type in FLOAT_TYPES
    # 1999 * 0.01 is 19.990000000000002: round to what scale and add can express unless the
    # config says otherwise (float fields keep their precision).
    decimals = spec.decimals
    if decimals is None and not is_float and not plain:
        decimals = max(_places(scale), _places(add))

    def value(data: bytes, offset: int) -> JSONValue:
        raw = read(data, offset)
        if is_float and not math.isfinite(raw):
            return None  # NaN/inf cannot travel as JSON; NaN is also BLE's "no value"
        result = raw if plain else raw * scale + add
        return round(result, decimals) if decimals is not None else result

    return value


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    offset: int
    end: int
    read: Callable[[bytes, int], JSONValue]


class Layout:
    """A compiled ``fields`` mapping; :meth:`decode` turns a payload into named values."""

    __slots__ = ("_fields", "min_length")

    def __init__(self, fields: Mapping[str, FieldSpec]) -> None:
        self._fields = tuple(
            _Field(name, spec.offset, spec.offset + spec.size, _scaled(spec))
            for name, spec in fields.items()
        )
        self.min_length = max((f.end for f in self._fields), default=0)
        """The shortest payload that holds every field."""

    def decode(self, data: bytes, values: dict[str, JSONValue]) -> None:
        """Add every field's value to ``values``; :class:`LayoutError` if ``data`` is too short."""
        if len(data) < self.min_length:
            missing = [f.name for f in self._fields if f.end > len(data)]
            raise LayoutError(
                f"payload is {len(data)} bytes, the layout needs {self.min_length}"
                f" (no room for {', '.join(missing)})"
            )
        for field in self._fields:
            values[field.name] = field.read(data, field.offset)


def encode(value: JSONValue, spec: Encoding) -> bytes:
    """The bytes that make a device read ``value`` under ``spec`` (the inverse of decoding).

    Raises :class:`LayoutError` for a value of the wrong kind or outside the type's range.
    """
    if spec.type == "hex":
        if not isinstance(value, str):
            raise LayoutError("expected a hex string")
        try:
            data = bytes.fromhex(value)
        except ValueError:
            raise LayoutError("expected a hex string like 0a1b") from None
        return _sized(data, spec)
    if spec.type == "string":
        if not isinstance(value, str):
            raise LayoutError("expected a string")
        return _sized(value.encode("utf-8"), spec)
    if spec.type == "bool":
        if not isinstance(value, bool):
            raise LayoutError("expected true or false")
        return b"\x01" if value else b"\x00"
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise LayoutError("expected a number")
    if not math.isfinite(value):
        raise LayoutError("expected a finite number")
    exact = isinstance(value, int) and spec.scale == 1.0 and spec.add == 0.0
    raw = value if exact else (value - spec.add) / spec.scale  # floats lose 64-bit precision
    order = _byte_order(spec)
    if spec.type in FLOAT_TYPES:
        try:
            return struct.pack(order + _FLOAT_CODES[spec.size], raw)
        except (OverflowError, struct.error):
            raise LayoutError(f"{value} does not fit a {spec.type}") from None
    size, signed = INTEGER_TYPES[spec.type]
    number = round(raw)
    try:
        return number.to_bytes(size, spec.endian, signed=signed)
    except OverflowError:
        low = -(1 << (8 * size - 1)) if signed else 0
        high = (1 << (8 * size - 1)) - 1 if signed else (1 << (8 * size)) - 1
        raise LayoutError(f"{value} is raw {number}, outside {spec.type} ({low}..{high})") from None


def _sized(data: bytes, spec: Encoding) -> bytes:
    assert spec.length is not None
    if len(data) > spec.length:
        raise LayoutError(f"{len(data)} bytes do not fit the {spec.length}-byte field")
    return data
