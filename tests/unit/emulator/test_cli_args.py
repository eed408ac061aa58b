"""``edged emulator`` arguments (its live behaviour: tests/integration/emulator/test_cli.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edged.emulator import cli
from edged.model import DeviceIdentity


def test_parse_command_spec() -> None:
    spec = cli.parse_command_spec('modbus-meter/boiler-1:setpoint:{"value": 21.5, "note": "a:b"}')
    assert spec.device == DeviceIdentity("modbus-meter", "boiler-1")
    assert spec.command == "setpoint"
    assert spec.data == {"value": 21.5, "note": "a:b"}
    assert cli.parse_command_spec("t/d:ping").data == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("boiler-1:ping:{}", "valid type and device ids"),
        ("t/d d:ping:{}", "valid type and device ids"),
        ("t/d:set/point:{}", "not a valid command name"),
        ("t/d::{}", "not a valid command name"),
        ("t/d:ping:{nope}", "not JSON"),
    ],
)
def test_bad_command_specs(text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        cli.parse_command_spec(text)


def test_register_adds_the_subcommand(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(
        [
            "emulator", "--org", "o", "--username", "u", "--password-file", str(tmp_path / "p"),
            "--send-command", "t/d:ping", "--send-command", "t/d:stop:[1]", "--tls-ca", "ca.pem",
        ]
    )  # fmt: skip
    assert args.func is cli.run
    assert (args.host, args.port, args.tls) == ("127.0.0.1", 1883, False)
    assert args.tls_ca == Path("ca.pem")
    assert [spec.command for spec in args.send_command] == ["ping", "stop"]
    assert args.app_id.startswith("watch-")


def test_unreadable_password_file_exits_66(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    missing = tmp_path / "missing"
    args = parser.parse_args(
        ["emulator", "--org", "o", "--username", "u", "--password-file", str(missing)]
    )
    assert cli.run(args) == cli.EX_NOINPUT
    assert "cannot read" in capsys.readouterr().err


def test_paho_private_api_the_emulator_relies_on() -> None:
    """Canary: stop() closes paho's wake-up socket pair through ``Client._reset_sockets``."""
    assert callable(getattr(mqtt.Client, "_reset_sockets", None))


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(
        ["emulator", "--org", "o", "--username", "u", "--password-file", "p", *argv]
    )


def test_auto_registration_options() -> None:
    args = _parse("--gateway", "gw/g1", "--registration-delay", "2.5", "--max-pending", "0")
    assert args.gateway == DeviceIdentity("gw", "g1")
    assert (args.registration_delay, args.max_pending) == (2.5, 0)
    off = _parse()
    assert (off.gateway, off.registration_delay, off.max_pending) == (None, None, 128)


@pytest.mark.parametrize(
    "argv",
    [
        ["--gateway", "g1"],
        ["--gateway", "gw/g 1"],
        ["--registration-delay", "-1"],
        ["--registration-delay", "nan"],
        ["--registration-delay", "soon"],
        ["--max-pending", "-1"],
        ["--max-pending", "1.5"],
    ],
)
def test_bad_auto_registration_options(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(*argv)


def test_registration_delay_needs_the_gateway(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "p").write_text("secret")
    args = _parse("--registration-delay", "1")
    args.password_file = tmp_path / "p"
    assert cli.run(args) == cli.EX_USAGE
    assert "needs --gateway" in capsys.readouterr().err
