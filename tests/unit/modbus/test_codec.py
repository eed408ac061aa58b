"""Register decoding and encoding for every type and every word/byte order, and scaling."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.adapters.modbus.codec import (
    INTEGER_TYPES,
    REGISTER_COUNT,
    DataType,
    Order,
    bytes_to_registers,
    decode,
    encode,
    integer_range,
    make_decoder,
    make_scaler,
    registers_to_bytes,
    scale_value,
    unscale_value,
)

pytestmark = pytest.mark.modbus

BIG, LITTLE = Order.BIG, Order.LITTLE

# 0x11223344 laid out the four ways device manuals call ABCD, CDAB, BADC and DCBA.
LAYOUTS = [
    (BIG, BIG, [0x1122, 0x3344]),  # ABCD
    (LITTLE, BIG, [0x3344, 0x1122]),  # CDAB
    (BIG, LITTLE, [0x2211, 0x4433]),  # BADC
    (LITTLE, LITTLE, [0x4433, 0x2211]),  # DCBA
]


@pytest.mark.parametrize(("word", "byte", "registers"), LAYOUTS)
def test_32_bit_layouts(word: Order, byte: Order, registers: list[int]) -> None:
    assert decode(registers, DataType.UINT32, word_order=word, byte_order=byte) == 0x11223344
    assert encode(0x11223344, DataType.UINT32, 2, word, byte) == registers


@pytest.mark.parametrize(
    ("word", "byte", "registers"),
    [
        (BIG, BIG, [0x0102, 0x0304, 0x0506, 0x0708]),
        (LITTLE, BIG, [0x0708, 0x0506, 0x0304, 0x0102]),
        (BIG, LITTLE, [0x0201, 0x0403, 0x0605, 0x0807]),
        (LITTLE, LITTLE, [0x0807, 0x0605, 0x0403, 0x0201]),
    ],
)
def test_64_bit_layouts(word: Order, byte: Order, registers: list[int]) -> None:
    assert (
        decode(registers, DataType.UINT64, word_order=word, byte_order=byte) == 0x0102030405060708
    )
    assert encode(0x0102030405060708, DataType.UINT64, 4, word, byte) == registers


@pytest.mark.parametrize(
    ("data_type", "registers", "value"),
    [
        (DataType.INT16, [0xFFFE], -2),
        (DataType.UINT16, [0xFFFE], 65534),
        (DataType.INT32, [0xFFFF, 0xFFFE], -2),
        (DataType.UINT32, [0xFFFF, 0xFFFE], 0xFFFFFFFE),
        (DataType.INT64, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], -2),
        (DataType.UINT64, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFE], 2**64 - 2),
        (DataType.FLOAT32, [0x41AC, 0x0000], 21.5),
        (DataType.FLOAT64, [0x4035, 0x8000, 0x0000, 0x0000], 21.5),
    ],
)
def test_numeric_types(data_type: DataType, registers: list[int], value: float) -> None:
    assert REGISTER_COUNT[data_type] == len(registers)
    assert decode(registers, data_type) == value
    assert encode(value, data_type, len(registers)) == registers


def test_float32_little_word_order_matches_struct() -> None:
    high, low = struct.unpack(">HH", struct.pack(">f", -1.25))
    assert decode([low, high], DataType.FLOAT32, word_order=LITTLE) == -1.25


def test_strings() -> None:
    registers = [0x4142, 0x4344, 0x4500, 0x0000]  # "ABCDE" NUL-padded
    assert decode(registers, DataType.STRING) == "ABCDE"
    assert encode("ABCDE", DataType.STRING, 4) == registers
    swapped = [0x4241, 0x4443, 0x0045, 0x0000]
    assert decode(swapped, DataType.STRING, byte_order=LITTLE) == "ABCDE"
    assert encode("ABCDE", DataType.STRING, 4, BIG, LITTLE) == swapped
    assert decode([0x4142, 0x2020], DataType.STRING) == "AB"  # trailing spaces dropped
    assert decode([0xFF41], DataType.STRING) == "\ufffdA"  # not UTF-8: replaced, never raises
    with pytest.raises(ValueError, match="at most 4"):
        encode("ABCDE", DataType.STRING, 2)


@pytest.mark.parametrize(
    ("bit", "width", "value"),
    [(0, 1, True), (1, 1, False), (4, 4, 0x5), (8, 4, 0xA), (12, 4, 0xF), (0, 16, 0xFA51)],
)
def test_bit_fields(bit: int, width: int, value: int | bool) -> None:
    result = decode([0xFA51], DataType.BITS, bit=bit, width=width)
    assert result == value
    assert isinstance(result, bool) == (width == 1)


def test_bit_types_are_not_encoded() -> None:
    with pytest.raises(ValueError, match="not written"):
        encode(1, DataType.BITS, 1)
    with pytest.raises(ValueError, match="single bits"):
        decode([1], DataType.BOOL)


@pytest.mark.parametrize(
    ("data_type", "raw", "message"),
    [
        (DataType.INT16, 32768, "outside"),
        (DataType.UINT16, -1, "outside"),
        (DataType.INT16, 1.5, "whole number"),
        (DataType.INT16, True, "whole number"),
        (DataType.FLOAT32, 1e39, "does not fit"),
        (DataType.FLOAT32, math.nan, "finite"),
        (DataType.FLOAT64, "1", "expected a number"),
        (DataType.STRING, 5, "expected a string"),
    ],
)
def test_encode_refuses_values_that_do_not_fit(
    data_type: DataType, raw: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        encode(raw, data_type, REGISTER_COUNT.get(data_type, 2))  # type: ignore[arg-type]


orders = st.sampled_from([BIG, LITTLE])


@given(data=st.data(), data_type=st.sampled_from(sorted(INTEGER_TYPES)), word=orders, byte=orders)
def test_integers_round_trip(
    data: st.DataObject, data_type: DataType, word: Order, byte: Order
) -> None:
    value = data.draw(st.integers(*integer_range(data_type)))
    registers = encode(value, data_type, REGISTER_COUNT[data_type], word, byte)
    assert all(0 <= r <= 0xFFFF for r in registers)
    assert decode(registers, data_type, word_order=word, byte_order=byte) == value


@given(value=st.floats(allow_nan=False, allow_infinity=False), word=orders, byte=orders)
def test_float64_round_trips(value: float, word: Order, byte: Order) -> None:
    registers = encode(value, DataType.FLOAT64, 4, word, byte)
    assert decode(registers, DataType.FLOAT64, word_order=word, byte_order=byte) == value


@given(value=st.floats(width=32, allow_nan=False, allow_infinity=False), word=orders, byte=orders)
def test_float32_round_trips(value: float, word: Order, byte: Order) -> None:
    registers = encode(value, DataType.FLOAT32, 2, word, byte)
    assert decode(registers, DataType.FLOAT32, word_order=word, byte_order=byte) == value


@given(
    data=st.binary(min_size=0, max_size=16).filter(lambda b: len(b) % 2 == 0),
    word=orders,
    byte=orders,
)
def test_byte_layout_round_trips(data: bytes, word: Order, byte: Order) -> None:
    assert registers_to_bytes(bytes_to_registers(data, word, byte), word, byte) == data


def test_scaling() -> None:
    assert scale_value(215, 0.1) == 21.5
    assert scale_value(3, 0.1) == 0.3  # divides by 10: no 0.30000000000000004
    assert scale_value(3, 0.01, 1) == 1.03
    assert scale_value(7, 10, -5) == 65
    assert isinstance(scale_value(7, 10, -5), int)
    assert scale_value(7) == 7
    assert isinstance(scale_value(7), int)
    assert scale_value(2.0, 0.5) == 1.0
    assert scale_value(1, 1 / 3, decimals=3) == 0.333
    assert scale_value(float("nan")) is None
    assert scale_value(float("inf"), 2) is None


def test_unscaling() -> None:
    assert unscale_value(21.5, DataType.INT16, 0.1) == 215
    assert unscale_value(21.55, DataType.INT16, 0.1) == 216  # rounded to the nearest step
    assert unscale_value(1.03, DataType.UINT16, 0.01, 1) == 3
    assert unscale_value(2**64 - 1, DataType.UINT64) == 2**64 - 1  # exact, no float detour
    assert unscale_value(1.5, DataType.FLOAT32, 0.5) == 3.0
    with pytest.raises(ValueError, match="outside the int16 range"):
        unscale_value(4000, DataType.INT16, 0.1)
    with pytest.raises(ValueError, match="finite"):
        unscale_value(math.inf, DataType.FLOAT64)
    with pytest.raises(ValueError, match="expected a number"):
        unscale_value(True, DataType.INT16)


@given(raw=st.integers(min_value=-32768, max_value=32767))
def test_scaling_round_trips_for_decimal_scales(raw: int) -> None:
    for scale in (0.1, 0.01, 0.001, 0.5, 2.0):
        value = scale_value(raw, scale, 3.0)
        assert value is not None
        assert unscale_value(value, DataType.INT16, scale, 3.0) == raw


@given(
    data_type=st.sampled_from([t for t in DataType if t is not DataType.BOOL]),
    registers=st.lists(st.integers(0, 0xFFFF), min_size=4, max_size=4),
    word=orders,
    byte=orders,
    bit=st.integers(0, 15),
    width=st.integers(1, 16),
)
def test_prepared_decoders_agree_with_decode(
    data_type: DataType, registers: list[int], word: Order, byte: Order, bit: int, width: int
) -> None:
    width = min(width, 16 - bit)
    size = REGISTER_COUNT.get(data_type, 4)
    regs = registers[:size]
    expected = decode(regs, data_type, word_order=word, byte_order=byte, bit=bit, width=width)
    got = make_decoder(data_type, word_order=word, byte_order=byte, bit=bit, width=width)(regs)
    assert type(got) is type(expected)
    assert got == expected or (got != got and expected != expected)  # NaN equals NaN here


def test_prepared_scalers() -> None:
    assert make_scaler()(7) == 7
    assert make_scaler()(float("nan")) is None
    assert make_scaler(0.1)(215) == 21.5
    assert make_scaler(0.01, 1, 1)(3) == 1.0
