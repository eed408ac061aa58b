"""The field tools' pure parts and argument parsing (the tools run against a server in
``tests/integration/modbus/test_cli.py``)."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest

from edged.adapters.modbus.cli import format_values, parse_units, read_requests, register, run_read
from edged.adapters.modbus.codec import DataType, Order

pytestmark = pytest.mark.modbus


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="edged")
    register(root.add_subparsers(dest="command"))
    return root


def test_read_arguments() -> None:
    args = parser().parse_args(
        [
            "modbus",
            "read",
            "tcp://h",
            "--unit",
            "3",
            "--address",
            "100",
            "--count",
            "2",
            "--type",
            "float32",
        ]
    )
    assert (args.url, args.unit, args.address, args.count, args.type) == (
        "tcp://h",
        3,
        100,
        2,
        "float32",
    )
    assert args.kind == "holding"
    assert args.func is run_read


def test_scan_arguments_and_required_tool() -> None:
    args = parser().parse_args(["modbus", "scan", "rtu:///dev/ttyS0", "--units", "1-3"])
    assert args.units == "1-3"
    assert args.timeout == 0.2
    with pytest.raises(SystemExit):
        parser().parse_args(["modbus"])


def test_parse_units() -> None:
    assert parse_units("1-3,7,2") == [1, 2, 3, 7]
    for bad in ("5-1", "300", "x"):
        with pytest.raises(ValueError):
            parse_units(bad)


def test_read_requests_never_split_a_value() -> None:
    assert read_requests("holding", DataType.UINT16, 10, 3) == [(10, 3)]
    assert read_requests("holding", DataType.FLOAT64, 0, 40) == [(0, 124), (124, 36)]
    assert read_requests("holding", DataType.INT32, 0, 100) == [(0, 124), (124, 76)]
    assert read_requests("holding", DataType.STRING, 5, 8) == [(5, 8)]
    assert read_requests("coil", DataType.UINT16, 0, 2500) == [(0, 2000), (2000, 500)]
    with pytest.raises(ValueError, match="does not fit"):
        read_requests("holding", DataType.STRING, 0, 200)


def test_format_values() -> None:
    lines = format_values(
        "holding",
        DataType.INT32,
        100,
        [0xFFFF, 0xFFFE, 0, 7],
        word_order=Order.BIG,
        byte_order=Order.BIG,
    )
    assert [line.split() for line in lines] == [
        ["100", "int32", "-2", "0xffff", "0xfffe"],
        ["102", "int32", "7", "0x0000", "0x0007"],
    ]
    text = format_values(
        "input", DataType.STRING, 0, [0x4142, 0], word_order=Order.BIG, byte_order=Order.BIG
    )
    assert text[0].split()[:3] == ["0", "string", "'AB'"]
    bits = format_values(
        "coil", DataType.UINT16, 5, [True, False], word_order=Order.BIG, byte_order=Order.BIG
    )
    assert [line.split() for line in bits] == [["5", "bool", "true"], ["6", "bool", "false"]]


def test_importing_the_cli_does_not_import_pymodbus() -> None:
    code = (
        "import sys, edged.adapters.modbus.cli, edged.adapters.modbus.config; "
        "print('pymodbus' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_bad_url_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    args = parser().parse_args(["modbus", "read", "serial:/dev/x", "--address", "0"])
    assert args.func(args) == 2
    assert "starts with tcp://" in capsys.readouterr().err
    args = parser().parse_args(
        ["modbus", "read", "tcp://h", "--address", "65535", "--type", "int32"]
    )
    assert args.func(args) == 2
    assert "0..65535" in capsys.readouterr().err
    args = parser().parse_args(["modbus", "scan", "tcp://h", "--units", "0-300"])
    assert args.func(args) == 2
