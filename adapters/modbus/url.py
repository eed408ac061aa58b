"""Bus URLs: one string names a physical Modbus line and how to talk on it.

* ``tcp://HOST[:PORT]``: Modbus TCP (MBAP framing), port 502 by default.
* ``rtu:///dev/ttyUSB0?baudrate=9600&parity=E&stopbits=1``: RTU on a local serial port
  (defaults: 19200 baud, even parity, one stop bit, as the Modbus serial line spec sets them).
* ``rtu+tcp://HOST:PORT``: RTU frames carried over a TCP socket (serial device servers and
  "transparent" gateways); the port is required because there is no standard one.

Pure code: parsing and the timing arithmetic of a serial line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

Scheme = Literal["tcp", "rtu", "rtu+tcp"]
Parity = Literal["N", "E", "O"]

_PARITY = {"n": "N", "none": "N", "e": "E", "even": "E", "o": "O", "odd": "O"}
_SERIAL_KEYS = ("baudrate", "parity", "stopbits")


@dataclass(frozen=True, slots=True)
class BusUrl:
    """A parsed bus URL; :func:`parse_bus_url` builds it, ``str()`` gives the canonical form."""

    scheme: Scheme
    host: str = ""
    port: int = 0
    path: str = ""
    baudrate: int = 19200
    parity: Parity = "E"
    stopbits: int = 1

    @property
    def is_serial(self) -> bool:
        """True for a local serial port (``rtu://``)."""
        return self.scheme == "rtu"

    @property
    def rtu_framing(self) -> bool:
        """True when frames are RTU (with CRC), false for Modbus TCP's MBAP header."""
        return self.scheme != "tcp"

    @property
    def line_key(self) -> tuple[str, str]:
        """What identifies the physical line: two buses with one key are one line."""
        if self.is_serial:
            return ("serial", self.path)
        return ("tcp", f"{self.host}:{self.port}")

    @property
    def bits_per_char(self) -> int:
        """Bits on the wire per byte: start, 8 data, parity (if any), stop bits."""
        return 1 + 8 + (0 if self.parity == "N" else 1) + self.stopbits

    def wire_time(self, nbytes: int) -> float:
        """Seconds ``nbytes`` take on a serial line; 0 for TCP (the network is not timed)."""
        if not self.is_serial:
            return 0.0
        return nbytes * self.bits_per_char / self.baudrate

    @property
    def frame_gap(self) -> float:
        """The silent interval that ends an RTU frame (3.5 characters; 1.75 ms above 19200 baud).

        0 for TCP and RTU over TCP, where the socket, not silence, delimits frames.
        """
        if not self.is_serial:
            return 0.0
        if self.baudrate > 19200:
            return 0.00175
        return 3.5 * self.bits_per_char / self.baudrate

    def __str__(self) -> str:
        if self.is_serial:
            query = f"baudrate={self.baudrate}&parity={self.parity}&stopbits={self.stopbits}"
            return f"rtu://{self.path}?{query}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def _int_option(name: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}")
    return value


def _serial_options(query: str) -> dict[str, int | str]:
    options: dict[str, int | str] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key not in _SERIAL_KEYS:
            raise ValueError(f"unknown option {key!r} (known: {', '.join(_SERIAL_KEYS)})")
        if key in options:
            raise ValueError(f"option {key!r} is given twice")
        if key == "baudrate":
            options[key] = _int_option(key, value, 50, 4_000_000)
        elif key == "stopbits":
            options[key] = _int_option(key, value, 1, 2)
        else:
            parity = _PARITY.get(value.strip().lower())
            if parity is None:
                raise ValueError("parity must be N, E or O")
            options[key] = parity
    return options


def parse_bus_url(text: str) -> BusUrl:
    """Parse a bus URL; raises :class:`ValueError` saying what is wrong and what would be right."""
    parts = urlsplit(text.strip())
    scheme = parts.scheme.lower()
    if scheme == "rtu":
        if parts.netloc:
            raise ValueError(
                f"a serial port URL needs three slashes: rtu:///dev/... (got host {parts.netloc!r})"
            )
        path = unquote(parts.path)
        if not path.startswith("/") or path == "/":
            raise ValueError(
                "a serial port URL needs an absolute device path, e.g. rtu:///dev/ttyUSB0"
            )
        options = _serial_options(parts.query)
        return BusUrl(
            scheme="rtu",
            path=path,
            baudrate=int(options.get("baudrate", 19200)),
            parity=options.get("parity", "E"),  # type: ignore[arg-type]
            stopbits=int(options.get("stopbits", 1)),
        )
    if scheme in ("tcp", "rtu+tcp"):
        if parts.query or parts.path not in ("", "/"):
            raise ValueError(f"a {scheme}:// URL takes only host and port")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            raise ValueError("the port must be a number between 0 and 65535") from None
        if not host:
            raise ValueError(f"a {scheme}:// URL needs a host, e.g. {scheme}://192.0.2.10:502")
        if port is None:
            if scheme == "rtu+tcp":
                raise ValueError("rtu+tcp:// needs an explicit port (there is no standard one)")
            port = 502
        if port == 0:
            raise ValueError("the port must be between 1 and 65535")
        return BusUrl(scheme=scheme, host=host, port=port)  # type: ignore[arg-type]
    raise ValueError(
        "a bus URL starts with tcp://, rtu:// or rtu+tcp:// "
        "(e.g. tcp://192.0.2.10:502, rtu:///dev/ttyUSB0?baudrate=9600&parity=E)"
    )
