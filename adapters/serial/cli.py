"""``edged serial monitor PORT``: print parsed frames from a port live, without a config file.

It runs the adapter's own runner (same framing, parsers, queries and reopen logic as the
daemon) with a sink that prints. pyserial is imported only when the command runs.
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import logging
import sys
import time
from collections.abc import Mapping
from typing import Any, TextIO

import orjson

from edged.config.types import parse_duration

_PARSERS = ("text", "json", "csv", "kv", "regex", "nmea", "raw")


def _escaped(value: str) -> str:
    r"""Command-line text with backslash escapes (``\r\n``, ``\x02``) turned into characters."""
    try:
        return codecs.decode(value.encode("latin-1", "backslashreplace"), "unicode_escape")
    except UnicodeDecodeError as exc:
        raise argparse.ArgumentTypeError(f"bad escape in {value!r}: {exc.reason}") from None


def _duration(value: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``serial monitor`` to the ``edged`` command line."""
    serial_parser = subparsers.add_parser("serial", help="serial port field tools")
    commands = serial_parser.add_subparsers(dest="serial_command", metavar="COMMAND", required=True)
    mon = commands.add_parser(
        "monitor",
        help="print parsed frames from a serial port live (no config needed)",
        description="Open PORT, cut what arrives into frames and print each parsed reading. "
        "Text options accept escapes such as '\\r\\n' and '\\x02'. Stop with Ctrl-C.",
    )
    mon.add_argument("port", help="device path, e.g. /dev/ttyUSB0 or /dev/serial/by-id/...")
    link = mon.add_argument_group("port")
    link.add_argument("--baud", type=int, default=9600)
    link.add_argument("--bytesize", type=int, choices=(5, 6, 7, 8), default=8)
    link.add_argument("--parity", choices=("none", "even", "odd", "mark", "space"), default="none")
    link.add_argument("--stopbits", type=float, choices=(1, 1.5, 2), default=1)
    link.add_argument("--flow", choices=("none", "rtscts", "dsrdtr", "xonxoff"), default="none")
    link.add_argument("--encoding", default="utf-8")
    link.add_argument("--wait", action="store_true", help="keep retrying if the port is missing")
    frames = mon.add_argument_group("framing")
    frames.add_argument("--framing", choices=("line", "fixed", "markers"), default="line")
    frames.add_argument("--delimiter", type=_escaped, default="\n", help="line delimiter")
    frames.add_argument("--no-strip", action="store_true", help="keep whitespace around lines")
    frames.add_argument("--length", type=int, help="frame length (fixed framing)")
    frames.add_argument("--start", type=_escaped, help="start marker (markers framing)")
    frames.add_argument("--end", type=_escaped, help="end marker (markers framing)")
    frames.add_argument("--max-length", type=int, default=4096)
    frames.add_argument("--ignore", help="skip frames matching this regular expression")
    parsing = mon.add_argument_group("parser")
    parsing.add_argument("--parser", choices=_PARSERS, default="text")
    parsing.add_argument("--columns", help="csv: comma-separated column names (empty skips)")
    parsing.add_argument("--csv-delimiter", type=_escaped, default=",")
    parsing.add_argument("--separator", type=_escaped, help="kv: between pairs")
    parsing.add_argument("--assign", type=_escaped, default="=", help="kv: between key and value")
    parsing.add_argument("--pattern", help="regex: a pattern with named groups")
    parsing.add_argument("--nmea-emit", choices=("fix", "sentences"), default="sentences")
    parsing.add_argument(
        "--no-checksum", action="store_true", help="nmea: accept sentences without one"
    )
    parsing.add_argument("--raw-format", choices=("hex", "base64"), default="hex")
    polling = mon.add_argument_group("polling")
    polling.add_argument("--send", type=_escaped, help="query to send, e.g. 'MEAS?\\r\\n'")
    polling.add_argument("--every", type=_duration, default=1.0, help="query interval (default 1s)")
    polling.add_argument("--timeout", type=_duration, default=1.0, help="reply timeout")
    output = mon.add_argument_group("output")
    output.add_argument("--show-frames", action="store_true", help="print each raw frame too")
    output.add_argument("--quiet", action="store_true", help="report bad frames only on change")
    output.add_argument("--count", type=int, help="stop after this many readings")
    output.add_argument("--duration", type=_duration, help="stop after this long")
    mon.set_defaults(func=monitor)


def device_section(args: argparse.Namespace) -> dict[str, Any]:
    """The ``serial:`` config block the command-line options describe."""
    framing: dict[str, Any]
    if args.framing == "line":
        framing = {
            "line": {
                "delimiter": args.delimiter,
                "strip": not args.no_strip,
                "max_length": args.max_length,
            }
        }
    elif args.framing == "fixed":
        framing = {"fixed": {"length": args.length}}
    else:
        framing = {"markers": {"start": args.start, "end": args.end, "max_length": args.max_length}}
    options: dict[str, Any] = {}
    if args.parser == "csv":
        options["delimiter"] = args.csv_delimiter
        if args.columns:
            options["columns"] = [name.strip() or None for name in args.columns.split(",")]
    elif args.parser == "kv":
        options = {"separator": args.separator, "assign": args.assign}
    elif args.parser == "regex":
        options = {"pattern": args.pattern}
    elif args.parser == "nmea":
        options = {"emit": args.nmea_emit, "require_checksum": not args.no_checksum}
    elif args.parser == "raw":
        options = {"format": args.raw_format}
    section: dict[str, Any] = {
        "port": args.port,
        "baud": args.baud,
        "bytesize": args.bytesize,
        "parity": args.parity,
        "stopbits": int(args.stopbits) if float(args.stopbits).is_integer() else args.stopbits,
        "flow_control": args.flow,
        "encoding": args.encoding,
        "framing": framing,
        "parser": {args.parser: options},
        "ignore": args.ignore,
    }
    if args.send is not None:
        section["poll"] = args.every
        section["queries"] = [{"name": "query", "send": args.send, "timeout": args.timeout}]
    return section


class PrintSink:
    """Prints readings and state changes; signals ``done`` after ``count`` readings."""

    def __init__(self, out: TextIO, err: TextIO, count: int | None, done: asyncio.Event) -> None:
        self.out = out
        self.err = err
        self.count = count
        self.done = done
        self.readings = 0

    async def emit(self, reading: Any) -> None:
        """Print one reading as ``time event {json}``."""
        stamp = time.strftime("%H:%M:%S", time.localtime(reading.timestamp))
        millis = int(reading.timestamp * 1000) % 1000
        body = orjson.dumps(dict(reading.values)).decode()
        print(f"{stamp}.{millis:03d} {reading.event} {body}", file=self.out, flush=True)
        self.readings += 1
        if self.count is not None and self.readings >= self.count:
            self.done.set()

    def set_state(self, device: Any, state: Any, detail: str = "") -> None:
        """Print a state change to stderr."""
        suffix = f": {detail}" if detail else ""
        print(f"# {state}{suffix}", file=self.err, flush=True)


def monitor(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``edged serial monitor``; returns the exit code."""
    from pydantic import ValidationError

    from edged.adapters.serial.config import DeviceConfig

    out = out or sys.stdout
    err = err or sys.stderr
    try:
        config = DeviceConfig.model_validate(device_section(args))
    except ValidationError as exc:
        for error in exc.errors(include_url=False):
            where = ".".join(str(part) for part in error["loc"])
            print(f"edged serial monitor: {where}: {error['msg']}", file=err)
        return 2
    _setup_logging(err, quiet=args.quiet)
    try:
        return asyncio.run(_monitor(config, args, out, err))
    except KeyboardInterrupt:
        return 0


def _setup_logging(err: TextIO, *, quiet: bool) -> None:
    logger = logging.getLogger("edged.adapters.serial")
    if not logging.getLogger().handlers and not logger.handlers:
        handler = logging.StreamHandler(err)
        handler.setFormatter(logging.Formatter("! %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if quiet else logging.DEBUG)


async def _monitor(config: Any, args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from edged.adapters.base import AdapterContext, DeviceSpec
    from edged.adapters.serial.adapter import SerialDevice
    from edged.adapters.serial.config import ReopenConfig, Settings
    from edged.adapters.serial.parsers import describe_frame
    from edged.adapters.serial.port import PortError, SerialLink
    from edged.model import DeviceIdentity

    done = asyncio.Event()
    outcome = {"code": 0}

    def open_link(section: Any) -> SerialLink:
        try:
            return SerialLink.open(section)
        except PortError as exc:
            if not args.wait:
                print(f"edged serial monitor: cannot open {args.port}: {exc}", file=err)
                outcome["code"] = 1
                done.set()
            raise

    def show_frame(frame: bytes) -> None:
        print(f"< {describe_frame(frame, limit=200)}", file=out, flush=True)

    identity = DeviceIdentity("serial-monitor", "monitor")
    device = SerialDevice(
        DeviceSpec(identity=identity, section=config, event="frame", loc=()),
        Settings(reopen=ReopenConfig(initial=0.5, max=5.0)),
        AdapterContext(gateway=identity),
        link_factory=open_link,
        frame_hook=show_frame if args.show_frames else None,
    )
    sink = PrintSink(out, err, args.count, done)
    runner = asyncio.create_task(device.run(sink), name="serial-monitor")
    waiter = asyncio.create_task(done.wait())
    try:
        finished, _ = await asyncio.wait(
            {runner, waiter}, timeout=args.duration, return_when=asyncio.FIRST_COMPLETED
        )
        if runner in finished:
            runner.result()  # re-raise an unexpected error
    finally:
        for task in (runner, waiter):
            task.cancel()
        await asyncio.gather(runner, waiter, return_exceptions=True)
    _print_counters(device.counters(), err)
    return outcome["code"]


def _print_counters(counters: Mapping[str, int], err: TextIO) -> None:
    shown = ", ".join(f"{name}={value}" for name, value in counters.items() if value)
    print(f"# counters: {shown or 'nothing received'}", file=err, flush=True)
