"""Config of the serial adapter: the device's ``serial:`` block and the ``adapters.serial`` block.

Pydantic models only (pyserial is not imported here). Delimiters and markers are YAML strings whose
characters are bytes 0-255: write control characters with double-quoted escapes such as
``"\\r\\n"`` or ``"\\x02"``. Text sent to a device is encoded with the device's ``encoding``;
``send_hex`` gives exact bytes.
"""

from __future__ import annotations

import codecs
import os
import re
import string
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, model_validator

from edged.adapters.base import Loc
from edged.config.types import Duration, FiniteFloat, PositiveDuration, StrictModel, TopicName
from edged.config.yamlsource import format_loc

MAX_FRAME_LIMIT = 1_048_576


class SerialModel(StrictModel):
    """Strict like every config model, but strings are kept exactly as written.

    Whitespace is meaningful here: delimiters (``"\\r\\n"``), separators (``"\\t"``), text sent
    to devices and regular expressions.
    """

    model_config = ConfigDict(str_strip_whitespace=False)


def _byte_text(value: str) -> str:
    try:
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(
            'only characters \\x00-\\xff are allowed here (write bytes as "\\x02" escapes)'
        ) from None
    return value


def _non_empty_bytes(value: str) -> str:
    if not value:
        raise ValueError("cannot be empty")
    return _byte_text(value)


Marker = Annotated[str, AfterValidator(_non_empty_bytes)]


def to_bytes(text: str) -> bytes:
    """The bytes a delimiter or marker stands for: each character is one byte (latin-1)."""
    return text.encode("latin-1")


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Regex = Annotated[str, AfterValidator(_regex)]


def bytes_regex(pattern: str, encoding: str) -> re.Pattern[bytes]:
    """``pattern`` compiled to match raw frames: its text is encoded with ``encoding``."""
    return re.compile(pattern.encode(encoding))


def _hex_text(value: str) -> str:
    try:
        bytes.fromhex(value)
    except ValueError:
        raise ValueError("must be hexadecimal bytes, e.g. '01 03 00 00'") from None
    return value


HexText = Annotated[str, AfterValidator(_hex_text)]


def _encoding(value: str) -> str:
    try:
        codecs.lookup(value)
    except LookupError:
        raise ValueError(f"unknown text encoding {value!r}") from None
    return value


def _shorthand(value: Any) -> Any:
    """``parser: json`` means ``parser: {json: {}}`` (same for framing)."""
    if isinstance(value, str):
        return {value: {}}
    return value


def _exactly_one(model: SerialModel, names: Sequence[str], what: str) -> None:
    given = [name for name in names if getattr(model, name) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one {what}: {', '.join(names)}")


# --- framing -------------------------------------------------------------------------------


class LineFraming(SerialModel):
    """Frames separated by a delimiter."""

    delimiter: Marker = "\n"
    strip: bool = True  # strip surrounding whitespace (handles \r\n) and skip empty lines
    max_length: int = Field(default=4096, ge=1, le=MAX_FRAME_LIMIT)


class FixedFraming(SerialModel):
    """Frames of a fixed number of bytes."""

    length: int = Field(ge=1, le=65536)


class MarkerFraming(SerialModel):
    """Frames between a start and an end marker (e.g. STX ``"\\x02"`` and ETX ``"\\x03"``)."""

    start: Marker
    end: Marker
    max_length: int = Field(default=4096, ge=1, le=MAX_FRAME_LIMIT)

    @model_validator(mode="after")
    def _distinct(self) -> MarkerFraming:
        if self.start == self.end:
            raise ValueError("start and end markers must differ (use line framing instead)")
        return self


class FramingConfig(SerialModel):
    """How the byte stream is cut into frames: exactly one of ``line``, ``fixed``, ``markers``."""

    line: LineFraming | None = None
    fixed: FixedFraming | None = None
    markers: MarkerFraming | None = None

    @model_validator(mode="after")
    def _one(self) -> FramingConfig:
        _exactly_one(self, ("line", "fixed", "markers"), "framing")
        return self


Framing = Annotated[FramingConfig, BeforeValidator(_shorthand)]

# --- parsers -------------------------------------------------------------------------------


class FieldSpec(SerialModel):
    """How one output field is made from a raw value of the frame."""

    source: str | None = Field(default=None, alias="from")  # raw name; default: the field's name
    type: Literal["auto", "float", "int", "str", "bool"] = "auto"
    scale: FiniteFloat = 1.0
    offset: FiniteFloat = 0.0
    decimals: int | None = Field(default=None, ge=0, le=12)
    required: bool = False  # a frame without this field is a parse error

    @model_validator(mode="after")
    def _numeric(self) -> FieldSpec:
        if self.type in ("str", "bool") and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError(f"scale and offset need a numeric type, not {self.type}")
        return self


Fields = dict[str, FieldSpec]


class JsonParser(SerialModel):
    """Each frame is a JSON object (or a list of objects: one reading each)."""

    event_key: str | None = None  # the value of this key names the event (and is removed)
    fields: Fields | None = None  # default: every top-level key


class CsvParser(SerialModel):
    """Values separated by a delimiter, named by position."""

    delimiter: Annotated[str, AfterValidator(_non_empty_bytes)] = ","
    columns: list[str | None] | None = None  # names by position; null skips; default c1, c2, ...
    fields: Fields | None = None


class KeyValueParser(SerialModel):
    """``key=value`` pairs, e.g. ``T=21.5 H=40``."""

    separator: str | None = None  # between pairs; default: whitespace, commas or semicolons
    assign: Annotated[str, AfterValidator(_non_empty_bytes)] = "="
    fields: Fields | None = None


class RegexRule(SerialModel):
    """One regular expression; its named groups become the fields."""

    pattern: Regex
    event: TopicName | None = None

    @model_validator(mode="after")
    def _groups(self) -> RegexRule:
        if not re.compile(self.pattern).groupindex:
            raise ValueError("the pattern needs named groups, e.g. (?P<temperature>[-0-9.]+)")
        return self


class RegexParser(SerialModel):
    """Regular expressions with named groups, tried in order; ``pattern`` is one rule."""

    pattern: Regex | None = None
    event: TopicName | None = None
    rules: list[RegexRule] = Field(default_factory=list)
    fields: Fields | None = None

    @model_validator(mode="after")
    def _some(self) -> RegexParser:
        if (self.pattern is None) == (not self.rules):
            raise ValueError("give either pattern (one expression) or rules (a list)")
        if self.pattern is not None and not re.compile(self.pattern).groupindex:
            raise ValueError("the pattern needs named groups, e.g. (?P<temperature>[-0-9.]+)")
        return self

    def all_rules(self) -> list[RegexRule]:
        """``rules``, or the single ``pattern`` as a rule."""
        if self.pattern is not None:
            return [RegexRule(pattern=self.pattern, event=self.event)]
        return list(self.rules)


NmeaKind = Literal["GGA", "RMC", "GSA", "VTG", "GLL"]
NMEA_KINDS: tuple[NmeaKind, ...] = ("GGA", "RMC", "GSA", "VTG", "GLL")


class NmeaParser(SerialModel):
    """NMEA 0183 sentences (GPS receivers)."""

    emit: Literal["fix", "sentences"] = "fix"  # one merged fix per epoch, or each sentence
    sentences: list[NmeaKind] = Field(default_factory=lambda: list(NMEA_KINDS))
    require_checksum: bool = True


class RawParser(SerialModel):
    """The frame's bytes, encoded as text."""

    format: Literal["hex", "base64"] = "hex"
    field: str = "data"


class TextParser(SerialModel):
    """The decoded frame as one text field."""

    field: str = "text"


class ParserConfig(SerialModel):
    """How a frame becomes readings: exactly one parser kind."""

    json_: JsonParser | None = Field(default=None, alias="json")
    csv: CsvParser | None = None
    kv: KeyValueParser | None = None
    regex: RegexParser | None = None
    nmea: NmeaParser | None = None
    raw: RawParser | None = None
    text: TextParser | None = None

    @model_validator(mode="after")
    def _one(self) -> ParserConfig:
        _exactly_one(self, ("json_", "csv", "kv", "regex", "nmea", "raw", "text"), "parser")
        return self

    @property
    def kind(self) -> str:
        """The parser kind's name as written in the config."""
        for name in ("json_", "csv", "kv", "regex", "nmea", "raw", "text"):
            if getattr(self, name) is not None:
                return name.rstrip("_")
        raise AssertionError("validated to have one parser")


Parser = Annotated[ParserConfig, BeforeValidator(_shorthand)]

# --- queries and commands ------------------------------------------------------------------


def _template(value: str) -> str:
    placeholders(value)
    return value


def placeholders(template: str) -> list[str]:
    """Names used by ``{name}`` / ``{name:spec}`` placeholders; raises ValueError if malformed.

    Only plain names are allowed: no attribute or index access, no ``!r`` conversions, no
    nested placeholders in format specs. Literal braces are written ``{{`` and ``}}``.
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ValueError(f"bad template: {exc} (write literal braces as {{{{ and }}}})") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier():
            raise ValueError(f"bad placeholder {{{name}}}: use a plain name like {{value}}")
        if conversion is not None:
            raise ValueError(f"placeholder {{{name}}}: conversions (!r, !s) are not allowed")
        if spec and "{" in spec:
            raise ValueError(f"placeholder {{{name}}}: nested placeholders are not allowed")
        names.append(name)
    return names


Template = Annotated[str, AfterValidator(_template)]


class _Sends(SerialModel):
    send: str | None = None  # text, encoded with the device's encoding
    send_hex: str | None = None  # exact bytes

    def _check_sends(self) -> None:
        if (self.send is None) == (self.send_hex is None):
            raise ValueError("give exactly one of send (text) or send_hex (bytes in hex)")


class QueryConfig(_Sends):
    """A query sent on every poll; its reply is parsed into readings."""

    name: TopicName | None = None  # for logs; default query1, query2, ...
    expect: Regex | None = None  # only frames matching this are the reply (others: unsolicited)
    frames: int = Field(default=1, ge=1, le=100)  # reply frames to collect
    timeout: PositiveDuration = 1.0
    parser: Parser | None = None  # default: the device's parser
    event: TopicName | None = None  # default: the parser's, else the device's event

    @model_validator(mode="after")
    def _check(self) -> QueryConfig:
        self._check_sends()
        if self.send_hex is not None:
            _hex_text(self.send_hex)
        return self


class CommandConfig(_Sends):
    """A platform command that writes to the device and optionally returns its reply.

    ``send`` and ``send_hex`` are templates: ``{name}`` placeholders are filled from the
    command's JSON payload (``{"value": 21.5}``); ``send_hex`` is hex after filling.
    """

    send: Template | None = None
    send_hex: Template | None = None
    reply: Literal["none", "text", "parsed"] = "none"
    expect: Regex | None = None  # which frame is the reply
    error: Regex | None = None  # a reply matching this fails the command
    frames: int = Field(default=1, ge=1, le=100)
    timeout: PositiveDuration = 2.0
    parser: Parser | None = None  # for reply: parsed; default: the device's parser

    @model_validator(mode="after")
    def _check(self) -> CommandConfig:
        self._check_sends()
        if self.send_hex is not None and not placeholders(self.send_hex):
            _hex_text(self.send_hex)
        if self.reply == "none" and (self.expect or self.error):
            raise ValueError("expect and error need reply: text or parsed")
        return self


# --- the device ----------------------------------------------------------------------------


def _stopbits(value: float) -> float:
    if value not in (1, 1.5, 2):
        raise ValueError("must be 1, 1.5 or 2")
    return value


def _port(value: str) -> str:
    value = value.strip()
    if not value.startswith("/"):
        raise ValueError(
            "must be an absolute device path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/..."
        )
    return value


class DeviceConfig(SerialModel):
    """The ``serial:`` section of a device: one device per serial port."""

    port: Annotated[str, AfterValidator(_port)]
    baud: int = Field(default=9600, ge=50, le=4_000_000)
    bytesize: Literal[5, 6, 7, 8] = 8
    parity: Literal["none", "even", "odd", "mark", "space"] = "none"
    stopbits: Annotated[float, AfterValidator(_stopbits)] = 1
    flow_control: Literal["none", "rtscts", "dsrdtr", "xonxoff"] = "none"
    exclusive: bool = True
    encoding: Annotated[str, AfterValidator(_encoding)] = "utf-8"
    framing: Framing = FramingConfig(line=LineFraming())
    parser: Parser | None = None  # unsolicited frames; none: only replies are used
    ignore: Regex | None = None  # frames matching this (e.g. "^#") are skipped
    poll: PositiveDuration = 10.0
    queries: list[QueryConfig] = Field(default_factory=list)
    commands: dict[TopicName, CommandConfig] = Field(default_factory=dict)
    min_interval: Duration = 0.0  # publish at most one unsolicited reading per event per interval
    idle_timeout: PositiveDuration | None = None  # offline when nothing is received this long
    write_timeout: PositiveDuration = 2.0
    location_source: bool = False  # publish valid NMEA fixes as the gateway's location

    @model_validator(mode="after")
    def _check(self) -> DeviceConfig:
        if self.parser is None and not self.queries and not self.commands:
            raise ValueError("nothing to do: give a parser, queries or commands")
        for index, query in enumerate(self.queries, 1):
            if query.parser is None and self.parser is None:
                raise ValueError(
                    f"query {query.name or index} has no parser and the device has none"
                )
        for name, command in self.commands.items():
            if command.reply == "parsed" and command.parser is None and self.parser is None:
                raise ValueError(f"command {name} wants a parsed reply but no parser is set")
        if self.location_source and (self.parser is None or self.parser.nmea is None):
            raise ValueError("location_source needs parser: nmea")
        patterns = [self.ignore, *(query.expect for query in self.queries)]
        for command in self.commands.values():
            patterns += [command.expect, command.error]
        for pattern in patterns:
            if pattern is not None:
                try:
                    pattern.encode(self.encoding)
                except UnicodeEncodeError:
                    raise ValueError(
                        f"pattern {pattern!r} cannot be encoded as {self.encoding}"
                    ) from None
        return self


class ReopenConfig(SerialModel):
    """Backoff between attempts to open a missing or failed port."""

    initial: PositiveDuration = 1.0
    max: PositiveDuration = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> ReopenConfig:
        if self.initial > self.max:
            raise ValueError("initial must not exceed max")
        return self


class Settings(SerialModel):
    """The ``adapters: serial:`` block, shared by every serial device."""

    reopen: ReopenConfig = ReopenConfig()


def cross_check(
    devices: Sequence[tuple[Loc, DeviceConfig]], settings: Settings
) -> Iterable[tuple[Loc, str]]:
    """One device per port, and at most one location source."""
    ports: dict[str, Loc] = {}
    location: Loc | None = None
    for loc, device in devices:
        port = os.path.normpath(device.port)
        if port in ports:
            yield (
                (*loc, "serial", "port"),
                f"port {device.port} is already used by the device at {format_loc(ports[port])}",
            )
        else:
            ports[port] = loc
        if device.location_source:
            if location is not None:
                yield (
                    (*loc, "serial", "location_source"),
                    f"only one location source allowed; already {format_loc(location)}",
                )
            else:
                location = loc
