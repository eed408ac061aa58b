"""Payload layouts: every type, byte order, scaling, bits, short payloads; encoding commands."""

from __future__ import annotations

import math
import struct
from typing import Any, Literal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edged.adapters.ble.config import INTEGER_TYPES, Encoding, FieldSpec
from edged.adapters.ble.layout import Layout, LayoutError, encode

pytestmark = pytest.mark.ble


def decode(data: bytes, **fields: dict[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    Layout({name: FieldSpec.model_validate(spec) for name, spec in fields.items()}).decode(
        data, values
    )
    return values


@pytest.mark.parametrize(
    ("spec", "data", "expected"),
    [
        ({"type": "uint8"}, b"\xff", 255),
        ({"type": "int8"}, b"\xff", -1),
        ({"type": "uint16"}, b"\x01\x02", 0x0201),
        ({"type": "uint16", "endian": "big"}, b"\x01\x02", 0x0102),
        ({"type": "int16"}, b"\x00\x80", -32768),
        ({"type": "int24"}, b"\xff\xff\xff", -1),
        ({"type": "uint24", "endian": "big"}, b"\x01\x00\x00", 65536),
        ({"type": "int32", "endian": "big"}, b"\xff\xff\xff\xfe", -2),
        ({"type": "uint32"}, b"\x00\x00\x00\x80", 2**31),
        ({"type": "int64"}, (-5).to_bytes(8, "little", signed=True), -5),
        ({"type": "uint64", "endian": "big"}, (2**63).to_bytes(8, "big"), 2**63),
        ({"type": "float16"}, struct.pack("<e", 1.5), 1.5),
        ({"type": "float32", "endian": "big"}, struct.pack(">f", -2.25), -2.25),
        ({"type": "float64"}, struct.pack("<d", 1e-3), 1e-3),
        ({"type": "bool"}, b"\x02", True),
        ({"type": "bool"}, b"\x00", False),
        ({"type": "string", "length": 6}, b"Hall\x00x", "Hall"),
        ({"type": "string", "length": 2}, b"\xff\xfe", "\ufffd\ufffd"),
        ({"type": "hex", "length": 3}, b"\x0a\x1b\x2c", "0a1b2c"),
    ],
)
def test_each_type(spec: dict[str, Any], data: bytes, expected: object) -> None:
    assert decode(data, value=spec) == {"value": expected}


def test_offsets_scale_add_and_rounding() -> None:
    data = bytes.fromhex("05 0f a0 4e 20 03")
    values = decode(
        data,
        temperature={"offset": 1, "type": "int16", "endian": "big", "scale": 0.005},
        humidity={"offset": 3, "type": "uint16", "endian": "big", "scale": 0.0025},
        kelvin={"offset": 1, "type": "int16", "endian": "big", "scale": 0.005, "add": 273.15},
        coarse={"offset": 1, "type": "int16", "endian": "big", "scale": 0.005, "decimals": 0},
        motion={"offset": 5, "bit": 0},
        door={"offset": 5, "bit": 1},
        tamper={"offset": 5, "bit": 2},
    )
    assert values == {
        "temperature": 20.0,
        "humidity": 50.0,
        "kelvin": 293.15,
        "coarse": 20.0,
        "motion": True,
        "door": True,
        "tamper": False,
    }


def test_scaled_values_carry_no_float_noise() -> None:
    assert decode((1999).to_bytes(2, "little"), t={"type": "uint16", "scale": 0.01}) == {"t": 19.99}


def test_not_a_number_becomes_null() -> None:
    assert decode(struct.pack("<f", math.nan), x={"type": "float32"}) == {"x": None}


def test_short_payload_names_the_missing_fields() -> None:
    with pytest.raises(
        LayoutError, match=r"payload is 2 bytes, the layout needs 4 \(no room for b\)"
    ):
        decode(b"\x01\x02", a={"type": "uint16"}, b={"offset": 2, "type": "uint16"})


def test_empty_payload() -> None:
    with pytest.raises(LayoutError, match="payload is 0 bytes"):
        decode(b"", a={})


@pytest.mark.parametrize("type_name", sorted(INTEGER_TYPES))
@given(data=st.data())
def test_encode_inverts_decode_for_integers(type_name: str, data: st.DataObject) -> None:
    size, signed = INTEGER_TYPES[type_name]
    low, high = (
        (-(1 << (8 * size - 1)), (1 << (8 * size - 1)) - 1)
        if signed
        else (0, (1 << (8 * size)) - 1)
    )
    raw = data.draw(st.integers(low, high))
    endian: Literal["little", "big"] = data.draw(st.sampled_from(["little", "big"]))
    exact = {"type": type_name, "endian": endian}
    payload = encode(raw, Encoding.model_validate(exact))
    assert payload == raw.to_bytes(size, endian, signed=signed)
    assert decode(payload, v=exact) == {"v": raw}

    raw = data.draw(st.integers(max(low, -(2**40)), min(high, 2**40)))  # exact in a float
    scaled = {**exact, "scale": 0.5, "add": -10}
    value = raw * 0.5 - 10
    payload = encode(value, Encoding.model_validate(scaled))
    assert payload == raw.to_bytes(size, endian, signed=signed)
    assert decode(payload, v=scaled) == {"v": value}


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        ({"type": "float32", "endian": "big"}, 1.5, struct.pack(">f", 1.5)),
        ({"type": "bool"}, True, b"\x01"),
        ({"type": "hex", "length": 4}, "0a1b", b"\x0a\x1b"),
        ({"type": "string", "length": 8}, "Küche", "Küche".encode()),
        ({"type": "int16", "scale": 0.1}, 21.54, (215).to_bytes(2, "little")),
    ],
)
def test_encode(spec: dict[str, Any], value: object, expected: bytes) -> None:
    assert encode(value, Encoding.model_validate(spec)) == expected


@pytest.mark.parametrize(
    ("spec", "value", "message"),
    [
        ({"type": "uint8"}, 256, r"256 is raw 256, outside uint8 \(0..255\)"),
        ({"type": "int8", "scale": 0.5}, -65, r"outside int8 \(-128..127\)"),
        ({"type": "uint8"}, "7", "expected a number"),
        ({"type": "uint8"}, True, "expected a number"),
        ({"type": "float32"}, math.inf, "expected a finite number"),
        ({"type": "float16"}, 1e6, "does not fit a float16"),
        ({"type": "bool"}, 1, "expected true or false"),
        ({"type": "hex", "length": 1}, "0a0b", "2 bytes do not fit the 1-byte field"),
        ({"type": "hex", "length": 2}, "xyz", "expected a hex string like"),
        ({"type": "string", "length": 2}, 5, "expected a string"),
    ],
)
def test_encode_rejects_bad_values(spec: dict[str, Any], value: object, message: str) -> None:
    with pytest.raises(LayoutError, match=message):
        encode(value, Encoding.model_validate(spec))
