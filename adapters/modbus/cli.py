"""Field tools: ``edged modbus read`` and ``edged modbus scan``, usable without a config.

Importing this module does not import pymodbus; the commands do, when they run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from edged.adapters.modbus.codec import (
    MAX_BITS_PER_READ,
    MAX_REGISTERS_PER_READ,
    REGISTER_COUNT,
    DataType,
    Order,
    decode,
)
from edged.adapters.modbus.url import BusUrl, parse_bus_url

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

_KINDS = ("holding", "input", "coil", "discrete")
_TYPES = [t.value for t in DataType if t not in (DataType.BOOL, DataType.BITS)]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``modbus read`` and ``modbus scan`` to the ``edged`` command line."""
    parser = subparsers.add_parser(
        "modbus",
        help="Modbus field tools: read values, find the unit ids on a bus",
        description="Talk to a Modbus bus directly, without a config file. A bus is a URL: "
        "tcp://HOST[:PORT], rtu:///dev/ttyUSB0?baudrate=9600&parity=E&stopbits=1, "
        "or rtu+tcp://HOST:PORT.",
    )
    tools = parser.add_subparsers(dest="modbus_tool", required=True, metavar="TOOL")

    read = tools.add_parser("read", help="read and decode values")
    read.add_argument("url", help="the bus, e.g. tcp://192.0.2.10:502")
    read.add_argument("--unit", type=int, default=1, help="unit id (default 1)")
    read.add_argument("--address", type=int, required=True, help="first address (0-based)")
    read.add_argument(
        "--count",
        type=int,
        default=1,
        help="how many values (for --type string: how many registers the string spans)",
    )
    read.add_argument("--type", default="uint16", choices=_TYPES, help="register type (uint16)")
    read.add_argument("--kind", default="holding", choices=_KINDS, help="address space (holding)")
    read.add_argument("--word-order", default="big", choices=["big", "little"])
    read.add_argument("--byte-order", default="big", choices=["big", "little"])
    read.add_argument("--timeout", type=float, default=1.0, help="seconds per request (1)")
    read.set_defaults(func=run_read)

    scan = tools.add_parser("scan", help="list the unit ids that answer")
    scan.add_argument("url", help="the bus, e.g. rtu:///dev/ttyUSB0?baudrate=9600")
    scan.add_argument("--units", default="1-247", help="ids to try, e.g. 1-10,20 (1-247)")
    scan.add_argument("--address", type=int, default=0, help="holding register to ask for (0)")
    scan.add_argument("--timeout", type=float, default=0.2, help="seconds per unit id (0.2)")
    scan.set_defaults(func=run_scan)


def parse_units(text: str) -> list[int]:
    """``"1-5,9"`` -> ``[1, 2, 3, 4, 5, 9]``; raises :class:`ValueError` for ids outside 0..255."""
    units: list[int] = []
    for part in text.split(","):
        first, _, last = part.strip().partition("-")
        low = int(first)
        high = int(last) if last else low
        if not 0 <= low <= high <= 255:
            raise ValueError(f"bad unit range {part.strip()!r} (ids are 0..255)")
        units.extend(range(low, high + 1))
    return list(dict.fromkeys(units))


def read_requests(
    kind: str, data_type: DataType, address: int, count: int
) -> list[tuple[int, int]]:
    """The reads (address, size) that fetch ``count`` values, none splitting a value."""
    if kind in ("coil", "discrete"):
        step, size, limit = 1, count, MAX_BITS_PER_READ
    elif data_type is DataType.STRING:
        step, size, limit = count, count, MAX_REGISTERS_PER_READ
    else:
        step = REGISTER_COUNT[data_type]
        size, limit = step * count, MAX_REGISTERS_PER_READ - MAX_REGISTERS_PER_READ % step
    if step > limit:
        raise ValueError(f"a value of {step} registers does not fit one read")
    return [(address + offset, min(limit, size - offset)) for offset in range(0, size, limit)]


def format_values(
    kind: str,
    data_type: DataType,
    address: int,
    raw: Sequence[Any],
    *,
    word_order: Order,
    byte_order: Order,
) -> list[str]:
    """One line per decoded value: address, type, value and the raw registers in hex."""
    if kind in ("coil", "discrete"):
        return [f"{address + i:>5}  bool     {str(bool(bit)).lower()}" for i, bit in enumerate(raw)]
    step = len(raw) if data_type is DataType.STRING else REGISTER_COUNT[data_type]
    lines = []
    for offset in range(0, len(raw), step):
        registers = list(raw[offset : offset + step])
        value = decode(registers, data_type, word_order=word_order, byte_order=byte_order)
        hexes = " ".join(f"0x{r:04x}" for r in registers)
        shown = repr(value) if isinstance(value, str) else str(value)
        lines.append(f"{address + offset:>5}  {data_type.value:<7}  {shown:<24} {hexes}")
    return lines


def _bus(url_text: str, out: TextIO) -> BusUrl | None:
    try:
        return parse_bus_url(url_text)
    except ValueError as exc:
        print(f"edged modbus: {exc}", file=out)
        return None


def run_read(args: argparse.Namespace) -> int:
    """``edged modbus read``: print decoded values; exit 1 when the device does not deliver."""
    url = _bus(args.url, sys.stderr)
    if url is None:
        return EXIT_USAGE
    data_type = DataType(args.type)
    try:
        requests = read_requests(args.kind, data_type, args.address, args.count)
    except ValueError as exc:
        print(f"edged modbus: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.count < 1 or requests[-1][0] + requests[-1][1] - 1 > 65535 or args.address < 0:
        print("edged modbus: the addresses must lie within 0..65535", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_read(url, args, data_type, requests))


async def _read(
    url: BusUrl, args: argparse.Namespace, data_type: DataType, requests: list[tuple[int, int]]
) -> int:
    from edged.adapters.modbus.link import Link, LinkError, quiet_pymodbus_logging

    quiet_pymodbus_logging()
    order = Order(args.word_order), Order(args.byte_order)
    print(f"{url} unit {args.unit} {args.kind}")
    try:
        async with Link(url, timeout=args.timeout, connect_timeout=max(args.timeout, 3.0)) as link:
            for address, size in requests:
                raw = await link.read(args.kind, args.unit, address, size)
                for line in format_values(
                    args.kind, data_type, address, raw, word_order=order[0], byte_order=order[1]
                ):
                    print(line)
    except LinkError as exc:
        print(f"edged modbus: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def run_scan(args: argparse.Namespace) -> int:
    """``edged modbus scan``: list unit ids that answer; exit 1 when none does."""
    url = _bus(args.url, sys.stderr)
    if url is None:
        return EXIT_USAGE
    try:
        units = parse_units(args.units)
    except ValueError as exc:
        print(f"edged modbus: {exc}", file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_scan(url, units, args.address, args.timeout))


async def _scan(url: BusUrl, units: list[int], address: int, per_unit: float) -> int:
    from edged.adapters.modbus.link import (
        Link,
        LinkError,
        NoResponseError,
        RefusedError,
        quiet_pymodbus_logging,
    )

    quiet_pymodbus_logging()
    found: list[int] = []
    print(f"scanning {url}: {len(units)} unit id(s), {per_unit:g} s each")
    try:
        async with Link(url, timeout=per_unit, connect_timeout=max(per_unit, 3.0)) as link:
            for unit in units:
                try:
                    value = await link.read("holding", unit, address, 1)
                except RefusedError as exc:
                    if exc.code in (10, 11):  # a gateway answering for a silent device
                        continue
                    print(f"unit {unit:>3}: answers (holding {address}: {exc})")
                except NoResponseError:
                    continue
                except LinkError as exc:
                    if not link.connected:
                        raise
                    print(f"unit {unit:>3}: answers, garbled ({exc})")
                else:
                    print(f"unit {unit:>3}: answers (holding {address} = {value[0]})")
                found.append(unit)
    except LinkError as exc:
        print(f"edged modbus: {exc}", file=sys.stderr)
        return EXIT_FAILED
    listed = ", ".join(map(str, found)) if found else "none"
    print(f"{len(found)} unit(s) answered: {listed}")
    return EXIT_OK if found else EXIT_FAILED
