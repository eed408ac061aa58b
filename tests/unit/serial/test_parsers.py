"""Parsers: JSON, CSV, key=value, regex, NMEA, raw and text frames into readings."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.adapters.serial import nmea
from edged.adapters.serial.config import ParserConfig
from edged.adapters.serial.parsers import FrameParser, Parsed, ParseError, auto_value, build_parser

pytestmark = pytest.mark.serial


def parser(config: Any, encoding: str = "utf-8", **kwargs: Any) -> FrameParser:
    if isinstance(config, str):
        config = {config: {}}
    return build_parser(ParserConfig.model_validate(config), encoding, **kwargs)


def values(p: FrameParser, frame: bytes) -> list[dict[str, Any]]:
    return [item.values for item in p.parse(frame)]


def test_auto_values() -> None:
    assert auto_value("12") == 12
    assert auto_value("+7") == 7
    assert auto_value("-3.5e2") == -350.0
    assert auto_value(".5") == 0.5
    assert auto_value("1_000") == "1_000"
    assert auto_value("nan") == "nan"
    assert auto_value("9" * 30) == 1e30  # beyond 64 bits: a float
    assert auto_value("9" * 400) == "9" * 400  # beyond float: kept as text
    assert auto_value("OK") == "OK"


# --- json ----------------------------------------------------------------------------------


def test_json_object_passes_through() -> None:
    p = parser("json")
    assert p.parse(b'{"t": 21.5, "ok": true, "tags": ["a"]}') == [
        Parsed(None, {"t": 21.5, "ok": True, "tags": ["a"]})
    ]


def test_json_list_gives_one_reading_per_object_and_event_key_names_the_event() -> None:
    p = parser({"json": {"event_key": "type"}})
    assert p.parse(b'[{"type": "env", "t": 1}, {"type": "power", "v": 2}, {"x": 3}]') == [
        Parsed("env", {"t": 1}),
        Parsed("power", {"v": 2}),
        Parsed(None, {"x": 3}),
    ]
    with pytest.raises(ParseError, match="event name"):
        p.parse(b'{"type": "bad/name", "t": 1}')


def test_json_field_mapping_with_nested_paths_types_and_scale() -> None:
    p = parser(
        {
            "json": {
                "fields": {
                    "temperature": {"from": "env.t", "type": "float", "scale": 0.1, "decimals": 2},
                    "count": {"type": "int", "required": True},
                    "label": {"from": "meta", "type": "str"},
                }
            }
        }
    )
    assert values(p, b'{"env": {"t": 215}, "count": "7", "meta": {"a": 1}, "other": 1}') == [
        {"temperature": 21.5, "count": 7, "label": '{"a":1}'}
    ]
    with pytest.raises(ParseError, match="required field count"):
        p.parse(b'{"env": {"t": 215}}')


@pytest.mark.parametrize(
    ("frame", "kind"),
    [(b"{not json", "parse"), (b"42", "parse"), (b'"\xff"', "decode"), (b"[1, 2]", "parse")],
)
def test_json_errors(frame: bytes, kind: str) -> None:
    with pytest.raises(ParseError) as caught:
        parser("json").parse(frame)
    assert caught.value.kind == kind


# --- csv -----------------------------------------------------------------------------------


def test_csv_columns_skip_and_types() -> None:
    p = parser(
        {
            "csv": {
                "columns": ["id", None, "temp", "hum"],
                "fields": {
                    "temp": {"type": "float"},
                    "hum": {"type": "int"},
                    "id": {"type": "str"},
                },
            }
        }
    )
    assert values(p, b"007, ignored ,21.25,40") == [{"temp": 21.25, "hum": 40, "id": "007"}]
    assert values(p, b"007,x,nan") == [{"temp": None, "id": "007"}]  # nan -> null; hum missing
    with pytest.raises(ParseError, match="not a number"):
        p.parse(b"007,x,warm,40")


def test_csv_without_columns_names_by_position_and_tab_delimiter() -> None:
    assert values(parser({"csv": {"delimiter": "\t"}}), b"1\t2.5\tok") == [
        {"c1": 1, "c2": 2.5, "c3": "ok"}
    ]


# --- key=value -----------------------------------------------------------------------------


def test_kv_default_separators() -> None:
    p = parser("kv")
    assert values(p, b"T=21.5 H=40,P=1013.2; status=ok junk") == [
        {"T": 21.5, "H": 40, "P": 1013.2, "status": "ok"}
    ]
    with pytest.raises(ParseError, match="no key=value"):
        p.parse(b"hello world")


def test_kv_custom_separator_assign_and_mapping() -> None:
    p = parser(
        {
            "kv": {
                "separator": "|",
                "assign": ":",
                "fields": {"weight": {"from": "W", "type": "float", "offset": -0.5}},
            }
        }
    )
    assert values(p, b"W: 12.5 | U:kg") == [{"weight": 12.0}]


def test_bool_and_int_conversion_errors() -> None:
    p = parser({"kv": {"fields": {"on": {"type": "bool"}, "n": {"type": "int"}}}})
    assert values(p, b"on=yes n=3") == [{"on": True, "n": 3}]
    assert values(p, b"on=OFF n=-3") == [{"on": False, "n": -3}]
    with pytest.raises(ParseError, match="boolean"):
        p.parse(b"on=maybe")
    with pytest.raises(ParseError, match="integer"):
        p.parse(b"n=3.5")
    with pytest.raises(ParseError, match="integer"):
        p.parse(b"n=" + b"9" * 30)


# --- regex ---------------------------------------------------------------------------------


def test_regex_rules_in_order_with_events() -> None:
    p = parser(
        {
            "regex": {
                "rules": [
                    {"pattern": r"^W\s+(?P<weight>[-\d.]+)\s*(?P<unit>\w+)", "event": "weight"},
                    {"pattern": r"^ST,(?P<state>\w+)"},
                ],
                "fields": {"weight": {"type": "float"}, "unit": {}, "state": {}},
            }
        }
    )
    assert p.parse(b"W  12.50 kg") == [Parsed("weight", {"weight": 12.5, "unit": "kg"})]
    assert p.parse(b"ST,STABLE") == [Parsed(None, {"state": "STABLE"})]
    with pytest.raises(ParseError) as caught:
        p.parse(b"???")
    assert caught.value.kind == "nomatch"


def test_regex_undecodable_bytes() -> None:
    p = parser({"regex": {"pattern": r"(?P<x>.+)"}}, encoding="ascii")
    with pytest.raises(ParseError) as caught:
        p.parse(b"caf\xe9")
    assert caught.value.kind == "decode"
    latin = parser({"regex": {"pattern": r"(?P<x>.+)"}}, encoding="latin-1")
    assert values(latin, b"caf\xe9") == [{"x": "café"}]


# --- nmea ----------------------------------------------------------------------------------

GGA = nmea.build_sentence("GPGGA,123519,4807.038,N,01131.000,E,1,08,0.9,545.4,M,46.9,M,,").encode()
RMC = nmea.build_sentence(
    "GPRMC,123519,A,4807.038,N,01131.000,E,022.4,084.4,230394,003.1,W"
).encode()


def test_nmea_fix_mode_emits_merged_fixes_and_reports_them() -> None:
    fixes: list[nmea.Fix] = []
    p = parser("nmea", on_fix=fixes.append)
    (first,) = values(p, GGA)
    assert first["latitude"] == pytest.approx(48.1173)
    assert first["valid"] is True
    assert values(p, RMC) == []  # the same epoch
    assert len(fixes) == 1
    assert values(p, nmea.build_sentence("GPGSV,1,1,00").encode()) == []  # not decoded: ignored


def test_nmea_sentence_mode_and_sentence_filter() -> None:
    p = parser({"nmea": {"emit": "sentences", "sentences": ["RMC"]}})
    assert values(p, GGA) == []
    (rmc,) = values(p, RMC)
    assert rmc["sentence"] == "RMC"
    assert rmc["time"] == "12:35:19.000"
    assert rmc["date"] == "1994-03-23"


def test_nmea_errors_are_classified() -> None:
    p = parser("nmea")
    with pytest.raises(ParseError) as caught:
        p.parse(GGA[:-2] + b"00")
    assert caught.value.kind == "checksum"
    with pytest.raises(ParseError) as caught:
        p.parse(b"hello")
    assert caught.value.kind == "parse"


# --- raw and text --------------------------------------------------------------------------


def test_raw_and_text() -> None:
    assert values(parser("raw"), b"\x01\xff") == [{"data": "01ff"}]
    assert values(parser({"raw": {"format": "base64", "field": "b"}}), b"\x01\xff") == [
        {"b": "Af8="}
    ]
    assert values(parser({"text": {"field": "line"}}), b"hello") == [{"line": "hello"}]


# --- robustness ----------------------------------------------------------------------------

CONFIGS: list[Any] = [
    "json",
    "csv",
    "kv",
    "nmea",
    "raw",
    "text",
    {"regex": {"pattern": r"(?P<a>\d+)\s+(?P<b>\S+)"}},
    {
        "csv": {
            "columns": ["a", "b"],
            "fields": {"a": {"type": "float", "scale": 2}, "b": {"type": "int"}},
        }
    },
    {"kv": {"fields": {"x": {"type": "bool", "required": True}}}},
    {"json": {"event_key": "e", "fields": {"v": {"from": "a.b", "type": "int", "scale": 3}}}},
]


@settings(max_examples=300, deadline=None)
@given(frame=st.one_of(st.binary(max_size=200), st.text(max_size=100).map(str.encode)))
def test_every_parser_raises_only_parse_errors(frame: bytes) -> None:
    for config in CONFIGS:
        p = parser(config)
        try:
            result = p.parse(frame)
        except ParseError:
            continue
        orjson.dumps([item.values for item in result])


@settings(max_examples=200, deadline=None)
@given(
    doc=st.recursive(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=5),
        lambda children: (
            st.lists(children, max_size=3)
            | st.dictionaries(st.text(max_size=3), children, max_size=3)
        ),
        max_leaves=10,
    )
)
def test_json_parser_never_fails_on_valid_json(doc: Any) -> None:
    frame = json.dumps(doc).encode()  # stdlib: also writes integers beyond 64 bits
    for config in [*CONFIGS[-1:], "json"]:
        try:
            result = parser(config).parse(frame)
        except ParseError:
            continue
        orjson.dumps([item.values for item in result])  # what is emitted must be publishable
