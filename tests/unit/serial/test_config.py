"""The serial config: validation through the real loader, with file:line errors."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from edged.adapters.serial.config import DeviceConfig, Settings, to_bytes
from edged.config import load_config, load_config_text
from edged.errors import ConfigError

pytestmark = pytest.mark.serial

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "examples" / "serial.yaml"

HEADER = """\
platform:
  org: testorg
  gateway: {type: gw, id: gw-1}
devices:
"""


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_TOKEN", "t0ken")


def load(devices: str, extra: str = "") -> Any:
    return load_config_text(
        HEADER + textwrap.indent(textwrap.dedent(devices), "  ") + extra, "cfg.yaml"
    )


def problems(devices: str, extra: str = "") -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(devices, extra)
    return caught.value.problems


def test_a_full_device_keeps_whitespace_and_escapes() -> None:
    config = load(
        r"""
        - id: scale-1
          type: scale
          adapter: serial
          serial:
            port: /dev/serial/by-id/usb-FTDI-if00-port0
            baud: 19200
            parity: even
            stopbits: 1.5
            bytesize: 7
            framing: {markers: {start: "\x02", end: "\x03"}}
            parser: {csv: {delimiter: "\t", columns: [weight, unit]}}
            queries:
              - {send: "W\r\n", expect: "^W", timeout: 500ms}
            commands:
              tare: {send: "T\r\n"}
              setpoint: {send_hex: "02 {value:02x} 03", reply: text, error: "^ERR"}
        """
    )
    (device,) = config.devices
    section: DeviceConfig = device.section
    assert section.baud == 19200
    assert section.stopbits == 1.5
    assert section.framing.markers is not None
    assert to_bytes(section.framing.markers.start) == b"\x02"
    assert section.parser is not None
    assert section.parser.csv is not None
    assert section.parser.csv.delimiter == "\t"
    assert section.queries[0].send == "W\r\n"
    assert section.queries[0].timeout == 0.5
    assert config.adapter_settings["serial"] == Settings()


def test_shorthands_and_defaults() -> None:
    config = load(
        """
        - id: gps
          type: gps
          adapter: serial
          serial: {port: /dev/ttyACM0, parser: nmea, location_source: true}
        """
    )
    section = config.devices[0].section
    assert section.framing.line is not None
    assert section.framing.line.delimiter == "\n"
    assert section.parser.nmea.emit == "fix"
    assert section.baud == 9600


@pytest.mark.parametrize(
    ("serial", "line", "where", "message"),
    [
        ("port: ttyUSB0\n  parser: json", 0, "serial.port", "absolute device path"),
        ("parser: {csv: {columnz: [a]}}", 0, "serial.parser.csv.columnz", "unknown key"),
        ("parser: {csv: {}, kv: {}}", 0, "serial.parser", "exactly one parser"),
        ("parser: yaml", 0, "serial.parser.yaml", "unknown key"),
        (
            "parser: {regex: {pattern: '(?P<a>'}}",
            0,
            "serial.parser.regex.pattern",
            "invalid regular",
        ),
        ("parser: {regex: {pattern: 'abc'}}", 0, "serial.parser.regex", "named groups"),
        ("stopbits: 3\n  parser: json", 0, "serial.stopbits", "1, 1.5 or 2"),
        (
            "framing: {line: {delimiter: ''}}\n  parser: json",
            0,
            "serial.framing.line.delimiter",
            "cannot be empty",
        ),
        (
            "framing: {markers: {start: '|', end: '|'}}\n  parser: json",
            0,
            "serial.framing.markers",
            "must differ",
        ),
        (
            "framing: {line: {delimiter: '€'}}\n  parser: json",
            0,
            "serial.framing.line.delimiter",
            "x00-",
        ),
        ("encoding: klingon\n  parser: json", 0, "serial.encoding", "unknown text encoding"),
        ("baud: 9600", -1, "serial", "nothing to do"),
        ("queries: [{send: 'A'}]", -1, "serial", "has no parser"),
        ("parser: json\n  location_source: true", -1, "serial", "needs parser: nmea"),
        (
            "parser: json\n  queries: [{send: 'A', send_hex: '00'}]",
            1,
            "serial.queries[0]",
            "exactly one of send",
        ),
        ("parser: json\n  queries: [{send_hex: 'zz'}]", 1, "serial.queries[0]", "hexadecimal"),
        (
            "parser: json\n  commands: {go: {send: '{a.b}'}}",
            1,
            "serial.commands.go.send",
            "plain name",
        ),
        (
            "parser: json\n  commands: {go: {send: 'x', error: '^E'}}",
            1,
            "serial.commands.go",
            "need reply",
        ),
        ("commands: {go: {send: 'x', reply: parsed}}", -1, "serial", "no parser is set"),
        (
            "parser: {json: {fields: {a: {type: str, scale: 2}}}}",
            0,
            "serial.parser.json.fields.a",
            "numeric type",
        ),
        ("parser: json\n  encoding: ascii\n  ignore: '°'", -1, "serial", "cannot be encoded"),
    ],
)
def test_errors_point_at_the_right_line(serial: str, line: int, where: str, message: str) -> None:
    """``line`` -1 is the ``serial:`` key, 0 the first line of ``serial`` (the snippet)."""
    body = "- id: d1\n  type: t\n  adapter: serial\n  serial:\n"
    serial_line = HEADER.count("\n") + 4
    if not serial.startswith("port:"):
        body += "    port: /dev/ttyS0\n"
    first = serial_line + body.count("\n") - 3
    body += textwrap.indent(serial.replace("\n  ", "\n"), "    ") + "\n"
    line = serial_line if line < 0 else first + line
    (problem,) = problems(body)
    assert problem.startswith(f"cfg.yaml:{line}: devices[0].{where}: "), problem
    assert message in problem


def test_cross_checks_ports_and_location_sources() -> None:
    found = problems(
        """
        - {id: a, type: t, adapter: serial, serial: {port: /dev/ttyUSB0, parser: nmea,
                                                       location_source: true}}
        - {id: b, type: t, adapter: serial, serial: {port: /dev/../dev/ttyUSB0, parser: json}}
        - {id: c, type: t, adapter: serial, serial: {port: /dev/ttyUSB1, parser: nmea,
                                                       location_source: true}}
        """
    )
    assert found == [
        "cfg.yaml:8: devices[1].serial.port: port /dev/../dev/ttyUSB0 is already used by the "
        "device at devices[0]",
        "cfg.yaml:10: devices[2].serial.location_source: only one location source allowed; "
        "already devices[0]",
    ]


def test_settings_block() -> None:
    config = load(
        "- {id: a, type: t, adapter: serial, serial: {port: /dev/ttyS0, parser: text}}\n",
        "adapters:\n  serial:\n    reopen: {initial: 200ms, max: 30s}\n",
    )
    assert config.adapter_settings["serial"].reopen.initial == 0.2
    (problem,) = problems(
        "- {id: a, type: t, adapter: serial, serial: {port: /dev/ttyS0, parser: text}}\n",
        "adapters:\n  serial:\n    reopen: {initial: 2m, max: 30s}\n",
    )
    assert "adapters.serial.reopen: initial must not exceed max" in problem


def _option_names(model: type[BaseModel], seen: set[type[BaseModel]]) -> set[str]:
    names: set[str] = set()
    if model in seen:
        return names
    seen.add(model)
    for name, info in model.model_fields.items():
        names.add(info.alias or name)
        for candidate in _models_in(info.annotation):
            names |= _option_names(candidate, seen)
    return names


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()) or ():
        found += _models_in(arg)
    for meta in getattr(annotation, "__metadata__", ()) or ():
        found += _models_in(meta)
    origin = getattr(annotation, "__origin__", None)
    if origin is not None and origin is not annotation:
        found += _models_in(origin)
    return found


def test_example_config_is_valid_and_shows_every_option() -> None:
    config = load_config(str(EXAMPLE))
    assert {device.adapter for device in config.devices} == {"serial"}
    text = EXAMPLE.read_text()
    options = _option_names(DeviceConfig, set()) | _option_names(Settings, set())
    missing = sorted(name for name in options if f"{name}:" not in text)
    assert not missing, f"options not shown in {EXAMPLE.name}: {missing}"
