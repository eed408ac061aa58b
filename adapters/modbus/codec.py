"""Register values to numbers, strings and flags and back; pure code built on :mod:`struct`.

Modbus moves 16-bit registers. A 32- or 64-bit value spans 2 or 4 of them, and devices disagree
on the order: ``word_order`` says whether the most significant register comes first (``big``,
the Modbus convention) or last (``little``); ``byte_order`` says whether each register carries
its high byte first (``big``, the convention) or its low byte first (``little``). The four
combinations are the ABCD, CDAB, BADC and DCBA layouts of device manuals.

Scaling turns a raw value into an engineering one: ``value = raw * scale + offset``.
"""

from __future__ import annotations

import enum
import math
import struct
from collections.abc import Callable, Sequence

MAX_REGISTERS_PER_READ = 125
MAX_BITS_PER_READ = 2000
MAX_REGISTERS_PER_WRITE = 123
MAX_BITS_PER_WRITE = 1968


class DataType(enum.StrEnum):
    """How a point's registers (or bit) are interpreted."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    INT64 = "int64"
    UINT64 = "uint64"
    FLOAT32 = "float32"
    FLOAT64 = "float64"
    STRING = "string"
    BITS = "bits"  # a bit field inside one register: ``bit`` (0 = least significant), ``width``
    BOOL = "bool"  # one coil or discrete input


class Order(enum.StrEnum):
    """Which end comes first: of the words in a value, or of the bytes in a register."""

    BIG = "big"
    LITTLE = "little"


_STRUCT = {
    DataType.INT16: "h",
    DataType.UINT16: "H",
    DataType.INT32: "i",
    DataType.UINT32: "I",
    DataType.INT64: "q",
    DataType.UINT64: "Q",
    DataType.FLOAT32: "f",
    DataType.FLOAT64: "d",
}

REGISTER_COUNT = {
    DataType.INT16: 1,
    DataType.UINT16: 1,
    DataType.INT32: 2,
    DataType.UINT32: 2,
    DataType.INT64: 4,
    DataType.UINT64: 4,
    DataType.FLOAT32: 2,
    DataType.FLOAT64: 4,
    DataType.BITS: 1,
}
"""Registers each fixed-size register type occupies (strings give their own count)."""

INTEGER_TYPES = frozenset(
    {
        DataType.INT16,
        DataType.UINT16,
        DataType.INT32,
        DataType.UINT32,
        DataType.INT64,
        DataType.UINT64,
    }
)
FLOAT_TYPES = frozenset({DataType.FLOAT32, DataType.FLOAT64})
FLOAT32_MAX = 3.4028234663852886e38

Raw = int | float | str | bool
"""A decoded value before scaling."""


def integer_range(data_type: DataType) -> tuple[int, int]:
    """The smallest and largest raw value of an integer type."""
    bits = 16 * REGISTER_COUNT[data_type]
    if data_type.value.startswith("u"):
        return 0, (1 << bits) - 1
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def registers_to_bytes(registers: Sequence[int], word_order: Order, byte_order: Order) -> bytes:
    """The registers as one big-endian byte string, undoing the device's word and byte order."""
    words = registers if word_order is Order.BIG else list(reversed(registers))
    endian: str = "big" if byte_order is Order.BIG else "little"
    return b"".join(word.to_bytes(2, endian) for word in words)  # type: ignore[arg-type]


def bytes_to_registers(data: bytes, word_order: Order, byte_order: Order) -> list[int]:
    """Inverse of :func:`registers_to_bytes` (``data`` has an even length)."""
    endian: str = "big" if byte_order is Order.BIG else "little"
    words = [int.from_bytes(data[i : i + 2], endian) for i in range(0, len(data), 2)]  # type: ignore[arg-type]
    return words if word_order is Order.BIG else list(reversed(words))


def decode(
    registers: Sequence[int],
    data_type: DataType,
    *,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
    bit: int = 0,
    width: int = 1,
) -> Raw:
    """Decode the registers of one point.

    ``registers`` holds exactly the point's registers. Strings end at the first NUL and lose
    trailing spaces; bytes that are not UTF-8 become U+FFFD. A one-bit field is a ``bool``.
    """
    if data_type is DataType.BITS:
        field = (registers[0] >> bit) & ((1 << width) - 1)
        return bool(field) if width == 1 else field
    if data_type is DataType.STRING:
        data = registers_to_bytes(registers, Order.BIG, byte_order)
        return data.split(b"\0", 1)[0].rstrip(b" ").decode("utf-8", errors="replace")
    if data_type is DataType.BOOL:
        raise ValueError("bool points are single bits; they have no registers to decode")
    data = registers_to_bytes(registers, word_order, byte_order)
    value: int | float = struct.unpack(">" + _STRUCT[data_type], data)[0]
    return value


Decoder = Callable[[Sequence[int]], Raw]


def make_decoder(
    data_type: DataType,
    *,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
    bit: int = 0,
    width: int = 1,
) -> Decoder:
    """A function that decodes one point's registers exactly as :func:`decode` would.

    The poller builds one per point when it starts, so each poll pays for a couple of
    ``struct`` calls and none of the decisions.
    """
    if data_type is DataType.BITS:
        return _bit_field(bit, width)
    if data_type in (DataType.STRING, DataType.BOOL):
        return lambda registers: decode(registers, data_type, byte_order=byte_order)
    if byte_order is Order.BIG and data_type in (DataType.UINT16, DataType.INT16):
        return _plain_16(signed=data_type is DataType.INT16)
    count = REGISTER_COUNT[data_type]
    words = struct.Struct(f"{'>' if byte_order is Order.BIG else '<'}{count}H")
    value = struct.Struct(">" + _STRUCT[data_type])
    flip = word_order is Order.LITTLE
    return lambda registers: value.unpack(words.pack(*(registers[::-1] if flip else registers)))[0]


def _bit_field(bit: int, width: int) -> Decoder:
    if width == 1:
        return lambda registers: bool((registers[0] >> bit) & 1)
    mask = (1 << width) - 1
    return lambda registers: (registers[0] >> bit) & mask


def _plain_16(*, signed: bool) -> Decoder:
    if signed:
        return lambda registers: registers[0] - 0x10000 if registers[0] & 0x8000 else registers[0]
    return lambda registers: registers[0]


def make_scaler(
    scale: float = 1.0, offset: float = 0.0, decimals: int | None = None
) -> Callable[[int | float], int | float | None]:
    """A function computing :func:`scale_value` with these settings."""
    if scale == 1 and offset == 0 and decimals is None:
        return lambda raw: None if isinstance(raw, float) and not math.isfinite(raw) else raw
    return lambda raw: scale_value(raw, scale, offset, decimals)


def encode(
    raw: Raw,
    data_type: DataType,
    count: int,
    word_order: Order = Order.BIG,
    byte_order: Order = Order.BIG,
) -> list[int]:
    """Encode a raw value into ``count`` registers; raises :class:`ValueError` if it cannot fit."""
    if data_type is DataType.STRING:
        if not isinstance(raw, str):
            raise ValueError("expected a string")
        data = raw.encode("utf-8")
        if len(data) > 2 * count:
            raise ValueError(f"the string is {len(data)} bytes long; at most {2 * count} fit")
        return bytes_to_registers(data.ljust(2 * count, b"\0"), Order.BIG, byte_order)
    if data_type in (DataType.BITS, DataType.BOOL):
        raise ValueError(f"{data_type} values are not written as registers")
    if data_type in INTEGER_TYPES:
        if not isinstance(raw, int) or isinstance(raw, bool):
            raise ValueError("expected a whole number")
        low, high = integer_range(data_type)
        if not low <= raw <= high:
            raise ValueError(f"{raw} is outside the {data_type} range {low}..{high}")
    else:
        if isinstance(raw, bool) or not isinstance(raw, int | float):
            raise ValueError("expected a number")
        if not math.isfinite(raw):
            raise ValueError("the value must be a finite number")
        if data_type is DataType.FLOAT32 and abs(raw) > FLOAT32_MAX:
            raise ValueError(f"{raw} does not fit a float32")
    data = struct.pack(">" + _STRUCT[data_type], raw)
    return bytes_to_registers(data, word_order, byte_order)


def _exact_divisor(scale: float) -> int | None:
    """``1/scale`` when it is a whole number (0.1 -> 10), so scaling can divide exactly."""
    if not 0 < abs(scale) < 1:
        return None
    inverse = 1 / scale
    rounded = round(inverse)
    return rounded if abs(inverse - rounded) <= 1e-9 * abs(inverse) else None


def scale_value(
    raw: int | float, scale: float = 1.0, offset: float = 0.0, decimals: int | None = None
) -> int | float | None:
    """``raw * scale + offset``; whole results of whole inputs stay integers.

    Dividing by 10 rather than multiplying by 0.1 keeps 3 * 0.1 from becoming
    0.30000000000000004. NaN and infinities (a device saying "no value") become ``None``.
    """
    if isinstance(raw, float) and not math.isfinite(raw):
        return None
    if isinstance(raw, int) and float(scale).is_integer() and float(offset).is_integer():
        value: int | float = raw * int(scale) + int(offset)
    else:
        divisor = _exact_divisor(scale)
        value = raw / divisor if divisor is not None else raw * scale
        value += offset
    if decimals is not None:
        value = round(value, decimals)
    return value


def unscale_value(
    value: int | float, data_type: DataType, scale: float = 1.0, offset: float = 0.0
) -> int | float:
    """The raw value to write for engineering ``value`` (rounded to a whole number for integers).

    Raises :class:`ValueError` when the value is not finite or does not fit the type.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    if not math.isfinite(value):
        raise ValueError("the value must be a finite number")
    raw: int | float
    if isinstance(value, int) and scale == 1 and float(offset).is_integer():
        raw = value - int(offset)  # exact, even for 64-bit values a float cannot hold
    elif (divisor := _exact_divisor(scale)) is not None:
        raw = (value - offset) * divisor
    else:
        raw = (value - offset) / scale
    if data_type in INTEGER_TYPES:
        if isinstance(raw, float):
            raw = round(raw)
        low, high = integer_range(data_type)
        if not low <= raw <= high:
            raise ValueError(f"{value} is {raw} raw, outside the {data_type} range {low}..{high}")
    elif data_type is DataType.FLOAT32 and abs(raw) > FLOAT32_MAX:
        raise ValueError(f"{value} does not fit a float32")
    return raw
