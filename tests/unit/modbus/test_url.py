"""Bus URLs: parsing, defaults, canonical form, line identity and serial timing."""

from __future__ import annotations

import pytest

from edged.adapters.modbus.url import BusUrl, parse_bus_url

pytestmark = pytest.mark.modbus


def test_tcp_defaults_to_port_502() -> None:
    url = parse_bus_url("tcp://192.0.2.10")
    assert url == BusUrl(scheme="tcp", host="192.0.2.10", port=502)
    assert str(url) == "tcp://192.0.2.10:502"
    assert not url.is_serial
    assert not url.rtu_framing


def test_ipv6_host_keeps_brackets_in_canonical_form() -> None:
    url = parse_bus_url("tcp://[::1]:1502")
    assert (url.host, url.port) == ("::1", 1502)
    assert str(url) == "tcp://[::1]:1502"


def test_rtu_over_tcp_needs_a_port() -> None:
    assert parse_bus_url("rtu+tcp://gw.local:4001").rtu_framing
    with pytest.raises(ValueError, match="explicit port"):
        parse_bus_url("rtu+tcp://gw.local")


def test_serial_defaults_follow_the_modbus_serial_spec() -> None:
    url = parse_bus_url("rtu:///dev/ttyUSB0")
    assert (url.path, url.baudrate, url.parity, url.stopbits) == ("/dev/ttyUSB0", 19200, "E", 1)
    assert url.is_serial
    assert url.rtu_framing


def test_serial_options() -> None:
    url = parse_bus_url("rtu:///dev/ttyAMA0?baudrate=9600&parity=none&stopbits=2")
    assert (url.baudrate, url.parity, url.stopbits) == (9600, "N", 2)
    assert str(url) == "rtu:///dev/ttyAMA0?baudrate=9600&parity=N&stopbits=2"
    assert parse_bus_url(str(url)) == url


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rtu://dev/ttyUSB0", "three slashes"),
        ("rtu:///dev/ttyUSB0?baud=9600", "unknown option 'baud'"),
        ("rtu:///dev/ttyUSB0?baudrate=fast", "whole number"),
        ("rtu:///dev/ttyUSB0?baudrate=10", "between 50"),
        ("rtu:///dev/ttyUSB0?parity=X", "parity must be"),
        ("rtu:///dev/ttyUSB0?stopbits=3", "between 1 and 2"),
        ("rtu:///dev/ttyUSB0?parity=E&parity=O", "given twice"),
        ("rtu:///", "absolute device path"),
        ("tcp://", "needs a host"),
        ("tcp://host:99999", "port"),
        ("tcp://host:0", "between 1 and 65535"),
        ("tcp://host/path", "only host and port"),
        ("modbus://host", "starts with tcp://"),
        ("/dev/ttyUSB0", "starts with tcp://"),
    ],
)
def test_bad_urls_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_bus_url(text)


def test_line_key_ignores_serial_settings_and_scheme_framing() -> None:
    assert (
        parse_bus_url("rtu:///dev/ttyS0?baudrate=9600").line_key
        == parse_bus_url("rtu:///dev/ttyS0").line_key
    )
    assert parse_bus_url("tcp://h:502").line_key == parse_bus_url("rtu+tcp://h:502").line_key
    assert parse_bus_url("tcp://h:502").line_key != parse_bus_url("tcp://h:503").line_key


def test_serial_timing() -> None:
    even = parse_bus_url("rtu:///dev/ttyS0?baudrate=9600&parity=E")
    assert even.bits_per_char == 11
    assert even.wire_time(96) == pytest.approx(0.11)
    assert even.frame_gap == pytest.approx(3.5 * 11 / 9600)
    fast = parse_bus_url("rtu:///dev/ttyS0?baudrate=115200&parity=N")
    assert fast.bits_per_char == 10
    assert fast.frame_gap == 0.00175  # fixed above 19200 baud
    tcp = parse_bus_url("tcp://h")
    assert tcp.wire_time(1000) == 0.0
    assert tcp.frame_gap == 0.0
