"""The Modbus config: every mistake is a config error at the right file and line."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest
import yaml

from edged.adapters.modbus.codec import DataType
from edged.adapters.modbus.config import (
    BusConfig,
    CommandConfig,
    DeviceConfig,
    PointConfig,
    Settings,
    resolve_bus,
)
from edged.config import Config, load_config, load_config_text
from edged.errors import ConfigError

pytestmark = pytest.mark.modbus

HEADER = """\
platform:
  org: testorg
  gateway: {type: gw, id: gw-1}
"""


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_TOKEN", "t0ken")


def load(body: str) -> Config:
    return load_config_text(HEADER + textwrap.dedent(body), "edged.yaml")


def problems(body: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(body)
    return caught.value.problems


def line_of(body: str, needle: str) -> int:
    """The line in the loaded file (header included) holding ``needle``."""
    for number, line in enumerate((HEADER + textwrap.dedent(body)).splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def device(points: str, extra: str = "", modbus: str = 'url: "tcp://192.0.2.1"') -> str:
    return f"""\
devices:
  - id: meter-1
    type: meter
    adapter: modbus
    modbus:
      {modbus}
{extra}      points:
{points}"""


def test_a_full_device_loads() -> None:
    config = load(
        """\
        adapters:
          modbus:
            buses:
              line1: {url: "rtu:///dev/ttyUSB0?baudrate=9600", timeout: 150ms, retries: 2}
        devices:
          - id: meter-1
            type: meter
            adapter: modbus
            modbus:
              bus: line1
              unit: 7
              interval: 2s
              word_order: little
              report: changes
              points:
                power: {address: 0, kind: input, type: float32, unit: kW, deadband: 0.1}
                energy: {address: 2, kind: input, type: uint64, scale: 0.001}
                name: {address: 10, type: string, count: 4}
                alarm: {address: 20, type: bits, bit: 3}
                mode: {address: 20, type: bits, bit: 4, width: 3}
                running: {address: 5, kind: coil}
              commands:
                setpoint: {address: 100, type: int16, scale: 0.1, min: 5, max: 30}
                pump: {address: 7, kind: coil}
        """
    )
    (dev,) = config.devices
    section = dev.section
    assert isinstance(section, DeviceConfig)
    assert section.points["power"].size == 2
    assert section.points["energy"].size == 4
    assert section.points["running"].data_type is DataType.BOOL
    assert section.points["name"].data_type is DataType.STRING
    assert section.commands["pump"].data_type is DataType.BOOL
    settings = config.adapter_settings["modbus"]
    assert isinstance(settings, Settings)
    bus = resolve_bus(section, settings)
    assert bus is not None
    assert bus.timeout == 0.15
    assert bus.retries == 2
    assert bus.frame_delay == pytest.approx(3.5 * 11 / 9600)


def test_register_points_default_to_uint16() -> None:
    config = load(device("        t: {address: 3}\n"))
    assert config.devices[0].section.points["t"].data_type is DataType.UINT16


@pytest.mark.parametrize(
    ("point", "key", "message"),
    [
        ("{address: 1, type: int32, count: 1}", "count", "int32 takes 2 register(s), not 1"),
        ("{address: 1, type: string}", "count", "a string needs count"),
        ("{address: 65535, type: float32}", "address", "runs past address 65535"),
        ("{address: 65536}", "address", "less than or equal to 65535"),
        ("{address: 1, kind: coil, type: int16}", "type", "a coil is one bit"),
        ("{address: 1, type: bool}", "type", "use type: bits"),
        ("{address: 1, kind: register}", "kind", "Input should be"),
        ("{address: 1, type: bits}", None, "needs bit"),
        ("{address: 1, type: bits, bit: 14, width: 4}", None, "runs past bit 15"),
        ("{address: 1, type: int16, bit: 2}", None, "only for type: bits"),
        ("{address: 1, type: string, count: 2, scale: 2}", None, "apply to numbers"),
        ("{address: 1, type: int16, scale: 0}", "scale", "other than 0"),
        ("{address: 1, kind: coil, deadband: 1}", None, "a deadband applies to numbers"),
        ("{address: 1, colour: red}", "colour", "unknown key"),
    ],
)
def test_point_mistakes(point: str, key: str | None, message: str) -> None:
    body = device(f"        p: {point}\n")
    (problem,) = problems(body)
    where = "devices[0].modbus.points.p" + (f".{key}" if key else "")
    assert problem.startswith(f"edged.yaml:{line_of(body, 'p: {')}: {where}: "), problem
    assert message in problem


def test_overlapping_points_are_reported_at_the_second_one() -> None:
    body = device(
        "        a: {address: 100, type: int32}\n"
        "        b: {address: 101}\n"
        "        c: {address: 101, kind: input}\n"  # another address space: fine
        "        f1: {address: 200, type: bits, bit: 0, width: 4}\n"
        "        f2: {address: 200, type: bits, bit: 4, width: 4}\n"  # disjoint bits: fine
        "        f3: {address: 200, type: bits, bit: 7}\n"
        "        f4: {address: 200}\n"
    )
    assert problems(body) == [
        f"edged.yaml:{line_of(body, 'b: {')}: devices[0].modbus.points.b.address: "
        "overlaps point 'a' (holding 100..101)",
        f"edged.yaml:{line_of(body, 'f3: {')}: devices[0].modbus.points.f3.address: "
        "overlaps point 'f2' (holding 200..200)",
        f"edged.yaml:{line_of(body, 'f4: {')}: devices[0].modbus.points.f4.address: "
        "overlaps point 'f1' (holding 200..200)",
    ]


def test_multi_key_device_mistakes() -> None:
    body = device(
        "        s: {address: 0, type: string, count: 20}\n"
        "        t: {address: 50, interval: 1s}\n"
        "        u: {address: 51, deadband: 2}\n",
        extra="      max_registers: 10\n      interval: 5s\n      full_report_every: 1m\n",
    )
    found = problems(body)
    assert [re.sub(r"^edged\.yaml:\d+: ", "", p) for p in found] == [
        "devices[0].modbus.points.s.count: "
        "needs 20 registers but the device reads at most 10 per request",
        "devices[0].modbus.points.t.interval: cannot be shorter than the device's interval (5s)",
        "devices[0].modbus.points.u.deadband: a deadband needs report: changes on the device",
        "devices[0].modbus.full_report_every: only applies with report: changes",
    ]
    assert found[-1].startswith(f"edged.yaml:{line_of(body, 'full_report_every')}:")


def test_bus_or_url_and_something_to_do() -> None:
    body = """\
    devices:
      - id: m1
        type: meter
        adapter: modbus
        modbus: {unit: 1, points: {a: {address: 1}}}
      - id: m2
        type: meter
        adapter: modbus
        modbus: {url: "tcp://h", bus: x, points: {a: {address: 1}}}
      - id: m3
        type: meter
        adapter: modbus
        modbus: {url: "tcp://h"}
    """
    found = problems(body)
    assert len(found) == 3
    assert all("devices[" in p for p in found)
    assert "give either bus" in found[0]
    assert "give either bus" in found[1]
    assert "needs points to read or commands to write" in found[2]


def test_bad_url_is_reported_at_the_url() -> None:
    body = device("        a: {address: 1}\n", modbus='url: "rtu://ttyUSB0"')
    (problem,) = problems(body)
    assert problem.startswith(f"edged.yaml:{line_of(body, 'url:')}: devices[0].modbus.url: ")
    assert "three slashes" in problem


def test_unit_shared_on_one_line_is_an_error_at_the_second_device() -> None:
    body = """\
    adapters:
      modbus:
        buses:
          rs485: {url: "rtu:///dev/ttyUSB0?baudrate=9600"}
    devices:
      - id: m1
        type: meter
        adapter: modbus
        modbus: {bus: rs485, unit: 3, points: {a: {address: 1}}}
      - id: m2
        type: meter
        adapter: modbus
        modbus:
          url: "rtu:///dev/ttyUSB0?baudrate=9600"
          unit: 3
          points: {a: {address: 1}}
      - id: m3
        type: meter
        adapter: modbus
        modbus: {url: "tcp://192.0.2.1", unit: 3, points: {a: {address: 1}}}
    """
    (problem,) = problems(body)
    assert problem == (
        f"edged.yaml:{line_of(body, '  unit: 3')}: devices[1].modbus.unit: unit 3 on "
        "rtu:///dev/ttyUSB0?baudrate=9600&parity=E&stopbits=1 is already used by devices[0]"
    )


def test_one_line_with_two_settings_is_an_error() -> None:
    body = """\
    adapters:
      modbus:
        buses:
          a: {url: "rtu:///dev/ttyUSB0?baudrate=9600"}
          b: {url: "rtu:///dev/ttyUSB0?baudrate=19200"}
    devices:
      - id: m1
        type: meter
        adapter: modbus
        modbus: {url: "rtu:///dev/ttyUSB0?baudrate=4800", unit: 3, points: {a: {address: 1}}}
    """
    found = problems(body)
    assert found[0] == (
        f"edged.yaml:{line_of(body, 'b: {')}: adapters.modbus.buses.b.url: "
        "the same line as bus at adapters.modbus.buses.a"
    )
    assert found[1].startswith(f"edged.yaml:{line_of(body, '4800')}: devices[0].modbus.url: ")
    assert "already set up differently at adapters.modbus.buses.a" in found[1]


def test_undefined_bus_and_broadcast_unit() -> None:
    body = """\
    devices:
      - id: m1
        type: meter
        adapter: modbus
        modbus: {bus: nope, points: {a: {address: 1}}}
      - id: m2
        type: meter
        adapter: modbus
        modbus: {url: "rtu:///dev/ttyS1", unit: 0, points: {a: {address: 1}}}
    """
    found = problems(body)
    assert "devices[0].modbus.bus: no bus named 'nope' (known: none defined)" in found[0]
    assert "devices[1].modbus.unit: a unit id on a serial line is 1..247" in found[1]


def test_tcp_allows_unit_0_and_url_devices_share_a_named_bus() -> None:
    config = load(
        """\
        adapters:
          modbus:
            buses:
              plc: {url: "tcp://192.0.2.9", timeout: 100ms}
        devices:
          - id: m1
            type: meter
            adapter: modbus
            modbus: {url: "tcp://192.0.2.9:502", unit: 0, points: {a: {address: 1}}}
        """
    )
    settings = config.adapter_settings["modbus"]
    assert isinstance(settings, Settings)
    bus = resolve_bus(config.devices[0].section, settings)
    assert bus is settings.buses["plc"]


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("{address: 1, type: bits}", "bit fields cannot be written"),
        ("{address: 1, kind: input}", "kind: Input should be 'holding' or 'coil'"),
        ("{address: 1, type: int32, function: single}", "function: single writes one register"),
        ("{address: 1, type: string, count: 124}", "at most 123 registers"),
        ("{address: 1, min: 5, max: 1}", "min must not exceed max"),
        ("{address: 1, kind: coil, min: 0}", "min and max apply to numbers"),
    ],
)
def test_command_mistakes(command: str, message: str) -> None:
    body = f"""\
devices:
  - id: m1
    type: meter
    adapter: modbus
    modbus:
      url: "tcp://h"
      commands:
        c: {command}
"""
    (problem,) = problems(body)
    assert f"edged.yaml:{line_of(body, 'c: {')}: devices[0].modbus.commands.c" in problem
    assert message in problem


def test_bus_frame_delay() -> None:
    assert BusConfig(url="tcp://h").frame_delay == 0.0
    assert BusConfig(url="rtu:///dev/ttyS0?baudrate=115200").frame_delay == 0.00175
    delayed = BusConfig.model_validate({"url": "rtu:///dev/ttyS0", "inter_frame_delay": "10ms"})
    assert delayed.frame_delay == 0.01


def _keys(node: object, into: set[str]) -> set[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            into.add(str(key))
            _keys(value, into)
    elif isinstance(node, list):
        for item in node:
            _keys(item, into)
    return into


def test_the_example_config_is_valid_and_shows_every_option() -> None:
    example = Path(__file__).resolve().parents[3] / "config" / "examples" / "modbus.yaml"
    config = load_config(str(example))
    assert {d.adapter for d in config.devices} == {"modbus"}
    data = yaml.safe_load(example.read_text())
    shown = _keys(data["adapters"]["modbus"], set())
    for device in data["devices"]:
        _keys(device["modbus"], shown)
    for model in (Settings, BusConfig, DeviceConfig, PointConfig, CommandConfig):
        missing = set(model.model_fields) - shown
        assert not missing, f"{model.__name__} options missing from the example: {missing}"
