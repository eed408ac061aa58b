"""Parsers: one frame in, zero or more readings (event name and values) out.

Pure code. Built from the ``parser:`` config by :func:`build_parser`. A parser raises
:class:`ParseError` (with a ``kind`` used for counting and logging) for anything it cannot use,
and nothing else, whatever bytes it is fed.
"""

from __future__ import annotations

import abc
import base64
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import orjson

from edged.adapters.serial import nmea
from edged.adapters.serial.config import (
    CsvParser,
    FieldSpec,
    JsonParser,
    KeyValueParser,
    NmeaParser,
    ParserConfig,
    RawParser,
    RegexParser,
    TextParser,
)
from edged.model import JSONValue


class ParseError(ValueError):
    """A frame could not be turned into readings.

    ``kind`` is one of ``decode`` (undecodable bytes), ``checksum``, ``nomatch`` (no pattern
    matched) or ``parse`` (anything else).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Parsed(NamedTuple):
    """One reading's worth of values; ``event`` ``None`` means the caller's default event.

    A named tuple rather than a dataclass: one is built per frame, and this is the cheapest.
    """

    event: str | None
    values: dict[str, JSONValue]


class FrameParser(abc.ABC):
    """Turns one frame into readings."""

    @abc.abstractmethod
    def parse(self, frame: bytes) -> list[Parsed]:
        """The readings in ``frame`` (possibly none); raises :class:`ParseError`."""


_EVENT_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")
_INT_RE = re.compile(r"[+-]?\d+")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


_NUMBER_START = frozenset("0123456789+-.")


def auto_value(text: str) -> JSONValue:
    """``"12"`` -> 12, ``"-1.5e3"`` -> -1500.0; anything else (``nan``, ``1_000``) stays text.

    ``text`` must already be stripped. Integers beyond 64 bits become floats, numbers beyond
    float range stay text. This runs for every value of every line, so it sticks to C-level
    string tests (no regular expressions, and no exceptions for plain words).
    """
    if text[:1] not in _NUMBER_START or not text.isascii():
        return text
    if text.isdigit() or (text[0] in "+-" and text[1:].isdigit()):
        if len(text) <= 19:  # at most 18 digits and a sign: within 64 bits
            return int(text)
    elif "_" in text:  # float() would accept 1_000.5
        return text
    try:
        number = float(text)
    except ValueError:
        return text
    return number if number - number == 0.0 else text  # inf and nan stay text


def _to_float(raw: JSONValue, name: str) -> float | None:
    if isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, int | float) or (isinstance(raw, str) and _FLOAT_RE.fullmatch(raw.strip())):
        value = float(raw)
    elif isinstance(raw, str) and raw.strip().lower() in ("nan", "inf", "+inf", "-inf"):
        return None  # sensors print nan for "no value"; published as null
    else:
        raise ParseError("parse", f"field {name}: {raw!r} is not a number")
    return value if math.isfinite(value) else None


def _to_int(raw: JSONValue, name: str) -> int:
    if isinstance(raw, bool):
        return int(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    if isinstance(raw, str) and len(raw) <= 40 and _INT_RE.fullmatch(raw.strip()):
        value = int(raw)
        if _INT64_MIN <= value <= _INT64_MAX:
            return value
    raise ParseError("parse", f"field {name}: {raw!r} is not a 64-bit integer")


def _to_bool(raw: JSONValue, name: str) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ParseError("parse", f"field {name}: {raw!r} is not a boolean")


class FieldMap:
    """Applies a ``fields:`` mapping (rename, type, scale, offset, decimals, required)."""

    def __init__(self, fields: Mapping[str, FieldSpec] | None) -> None:
        self.fields = dict(fields) if fields else None

    def apply(self, raw: Mapping[str, JSONValue], *, text_values: bool) -> dict[str, JSONValue]:
        """Output values from ``raw``; ``text_values`` says the raw values are unparsed text."""
        if self.fields is None:
            if text_values:
                return {name: auto_value(value) for name, value in raw.items()}
            return dict(raw)
        out: dict[str, JSONValue] = {}
        for name, spec in self.fields.items():
            source = spec.source or name
            value = _lookup(raw, source)
            if value is None or value == "":
                if spec.required:
                    raise ParseError("parse", f"required field {source} is missing")
                continue
            out[name] = convert(value, spec, name, text_value=text_values)
        return out


def _lookup(raw: Mapping[str, JSONValue], source: str) -> JSONValue:
    if source in raw:
        return raw[source]
    if "." not in source:
        return None
    node: JSONValue = raw
    for part in source.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def convert(raw: JSONValue, spec: FieldSpec, name: str, *, text_value: bool = True) -> JSONValue:
    """One raw value converted as ``spec`` says."""
    kind = spec.type
    value: JSONValue
    if kind == "auto":
        value = auto_value(raw.strip()) if isinstance(raw, str) and text_value else raw
    elif kind == "float":
        value = _to_float(raw, name)
    elif kind == "int":
        value = _to_int(raw, name)
    elif kind == "bool":
        return _to_bool(raw, name)
    else:
        return raw if isinstance(raw, str) else orjson.dumps(raw).decode()
    if spec.scale != 1.0 or spec.offset != 0.0:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ParseError("parse", f"field {name}: {raw!r} is not a number")
        value = value * spec.scale + spec.offset
    if spec.decimals is not None and isinstance(value, float):
        value = round(value, spec.decimals)
    return value


class _TextParser(FrameParser):
    """Base for parsers of text frames: decodes with the device's encoding."""

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding

    def decode(self, frame: bytes) -> str:
        try:
            return frame.decode(self.encoding)
        except UnicodeDecodeError as exc:
            raise ParseError(
                "decode", f"undecodable bytes ({self.encoding}): {exc.reason}"
            ) from None


class JsonLineParser(FrameParser):
    """A JSON object per frame (a list of objects gives one reading each)."""

    def __init__(self, config: JsonParser) -> None:
        self.event_key = config.event_key
        self.fields = FieldMap(config.fields)

    def parse(self, frame: bytes) -> list[Parsed]:
        try:
            document = orjson.loads(frame)
        except orjson.JSONDecodeError as exc:
            kind = "decode" if "UTF-8" in str(exc) else "parse"
            raise ParseError(kind, f"not JSON: {exc}") from None
        items = document if isinstance(document, list) else [document]
        return [self._one(item) for item in items]

    def _one(self, item: JSONValue) -> Parsed:
        if not isinstance(item, dict):
            raise ParseError("parse", f"expected a JSON object, got {type(item).__name__}")
        event = None
        if self.event_key is not None and self.event_key in item:
            item = dict(item)
            name = item.pop(self.event_key)
            if not isinstance(name, str) or not _EVENT_RE.fullmatch(name):
                raise ParseError("parse", f"event name {name!r} is not a valid event name")
            event = name
        return Parsed(event, self.fields.apply(item, text_values=False))


class CsvLineParser(_TextParser):
    """Delimited values named by position (``c1``, ``c2``... when no columns are given)."""

    def __init__(self, config: CsvParser, encoding: str) -> None:
        super().__init__(encoding)
        self.delimiter = config.delimiter
        self.columns = config.columns
        self.fields = FieldMap(config.fields)

    def parse(self, frame: bytes) -> list[Parsed]:
        cells = self.decode(frame).split(self.delimiter)
        if self.columns is None:
            raw = {f"c{index}": cell.strip() for index, cell in enumerate(cells, 1)}
        else:
            raw = {
                name: cell.strip()
                for name, cell in zip(self.columns, cells, strict=False)
                if name is not None
            }
        return [Parsed(None, self.fields.apply(raw, text_values=True))]


class KeyValueLineParser(_TextParser):
    """``key=value`` pairs; tokens without the assign string are ignored."""

    def __init__(self, config: KeyValueParser, encoding: str) -> None:
        super().__init__(encoding)
        self.separator = config.separator
        self.assign = config.assign
        self.fields = FieldMap(config.fields)

    def parse(self, frame: bytes) -> list[Parsed]:
        text = self.decode(frame)
        assign = self.assign
        raw: dict[str, JSONValue] = {}
        if self.separator is not None:
            for token in text.split(self.separator):
                key, found, value = token.partition(assign)
                key = key.strip()
                if found and key:
                    raw[key] = value.strip()
        elif self.fields.fields is None:  # the common case, kept tight: convert as we go
            for token in text.replace(",", " ").replace(";", " ").split():
                key, found, value = token.partition(assign)
                if found and key:
                    raw[key] = auto_value(value)
            if not raw:
                raise ParseError("parse", f"no key{assign}value pairs")
            return [Parsed(None, raw)]
        else:  # split() leaves no whitespace around tokens
            for token in text.replace(",", " ").replace(";", " ").split():
                key, found, value = token.partition(assign)
                if found and key:
                    raw[key] = value
        if not raw:
            raise ParseError("parse", f"no key{assign}value pairs")
        return [Parsed(None, self.fields.apply(raw, text_values=True))]


class RegexLineParser(_TextParser):
    """Named groups of the first matching rule become the fields."""

    def __init__(self, config: RegexParser, encoding: str) -> None:
        super().__init__(encoding)
        self.rules = [(re.compile(rule.pattern), rule.event) for rule in config.all_rules()]
        self.fields = FieldMap(config.fields)

    def parse(self, frame: bytes) -> list[Parsed]:
        text = self.decode(frame)
        for pattern, event in self.rules:
            match = pattern.search(text)
            if match is not None:
                raw = {
                    key: value.strip()
                    for key, value in match.groupdict().items()
                    if value is not None
                }
                return [Parsed(event, self.fields.apply(raw, text_values=True))]
        raise ParseError("nomatch", "no pattern matched")


class NmeaSentenceParser(FrameParser):
    """NMEA 0183 sentences: one merged fix per receiver epoch, or a reading per sentence.

    ``on_fix`` is called with every fix the :class:`~nmea.FixTracker` completes (valid or not),
    whichever ``emit`` mode is used; the adapter uses it for the gateway's location.
    """

    def __init__(
        self, config: NmeaParser, on_fix: Callable[[nmea.Fix], None] | None = None
    ) -> None:
        self.emit_fixes = config.emit == "fix"
        self.kinds = frozenset(config.sentences)
        self.require_checksum = config.require_checksum
        self.tracker = nmea.FixTracker()
        self.on_fix = on_fix

    def parse(self, frame: bytes) -> list[Parsed]:
        try:
            sentence = nmea.parse_sentence(frame, require_checksum=self.require_checksum)
            if sentence.kind not in self.kinds:
                return []
            values = nmea.decode(sentence)
        except nmea.ChecksumError as exc:
            raise ParseError("checksum", str(exc)) from None
        except nmea.NmeaError as exc:
            raise ParseError("parse", str(exc)) from None
        fixes = self.tracker.update(sentence.kind, values)
        if self.on_fix is not None:
            for fix in fixes:
                self.on_fix(fix)
        if self.emit_fixes:
            return [Parsed(None, fix.values()) for fix in fixes]
        return [Parsed(None, _sentence_values(sentence.kind, values))]


def _sentence_values(kind: str, values: dict[str, Any]) -> dict[str, JSONValue]:
    out: dict[str, JSONValue] = {"sentence": kind}
    for key, value in values.items():
        if key == "utc_seconds":
            out["time"] = nmea.format_utc(value)
        elif key == "date":
            out["date"] = "{:04d}-{:02d}-{:02d}".format(*value)
        else:
            out[key] = value
    return out


class RawFrameParser(FrameParser):
    """The frame's bytes as hex or base64 text."""

    def __init__(self, config: RawParser) -> None:
        self.field = config.field
        self.hex = config.format == "hex"

    def parse(self, frame: bytes) -> list[Parsed]:
        text = frame.hex() if self.hex else base64.b64encode(frame).decode("ascii")
        return [Parsed(None, {self.field: text})]


class TextFrameParser(_TextParser):
    """The decoded frame as one text field."""

    def __init__(self, config: TextParser, encoding: str) -> None:
        super().__init__(encoding)
        self.field = config.field

    def parse(self, frame: bytes) -> list[Parsed]:
        return [Parsed(None, {self.field: self.decode(frame)})]


def build_parser(
    config: ParserConfig, encoding: str, on_fix: Callable[[nmea.Fix], None] | None = None
) -> FrameParser:
    """The parser a validated ``parser:`` block describes."""
    builders: dict[str, Callable[[Any], FrameParser]] = {
        "json": JsonLineParser,
        "csv": lambda c: CsvLineParser(c, encoding),
        "kv": lambda c: KeyValueLineParser(c, encoding),
        "regex": lambda c: RegexLineParser(c, encoding),
        "nmea": lambda c: NmeaSentenceParser(c, on_fix),
        "raw": RawFrameParser,
        "text": lambda c: TextFrameParser(c, encoding),
    }
    kind = config.kind
    return builders[kind](getattr(config, "json_" if kind == "json" else kind))


def describe_frame(frame: bytes, limit: int = 60) -> str:
    """A short printable form of a frame for log messages."""
    shown = frame[:limit]
    text = repr(shown)[2:-1]
    return text + ("..." if len(frame) > limit else "")


__all__ = [
    "FrameParser",
    "ParseError",
    "Parsed",
    "build_parser",
    "convert",
    "describe_frame",
]
