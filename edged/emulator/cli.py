"""``edged emulator``: watch a broker as the platform would, printing every message live.

Connects as an application, renders each event, command result, DM exchange and rule violation
as one line until Ctrl-C (or SIGTERM, or ``--seconds``), then prints a summary of violations.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

import orjson

from edged.appclient import grammar

if TYPE_CHECKING:
    from edged.emulator.records import Record
    from edged.emulator.render import Renderer
from edged.model import DeviceIdentity

EX_OK = 0
EX_USAGE = 64
EX_NOINPUT = 66
EX_UNAVAILABLE = 69


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A ``--send-command TYPE/ID:COMMAND[:JSON]`` argument."""

    device: DeviceIdentity
    command: str
    data: Any


def parse_command_spec(text: str) -> CommandSpec:
    """Parse ``TYPE/ID:COMMAND[:JSON]`` (the JSON body defaults to ``{}``).

    Raises:
        argparse.ArgumentTypeError: malformed, invalid ids or command, or the body is not JSON.
    """
    target, _, rest = text.partition(":")
    command, _, body = rest.partition(":")
    type_id, _, device_id = target.partition("/")
    if not (grammar.is_valid_id(type_id) and grammar.is_valid_id(device_id)):
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected TYPE/ID:COMMAND[:JSON] with valid type and device ids"
        )
    if not grammar.is_valid_level(command):
        raise argparse.ArgumentTypeError(f"{text!r}: {command!r} is not a valid command name")
    try:
        data = orjson.loads(body) if body.strip() else {}
    except orjson.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: the body is not JSON: {exc}") from None
    return CommandSpec(DeviceIdentity(type_id, device_id), command, data)


def parse_device(text: str) -> DeviceIdentity:
    """Parse ``TYPE/ID``.

    Raises:
        argparse.ArgumentTypeError: not two valid ids.
    """
    type_id, _, device_id = text.partition("/")
    if not (grammar.is_valid_id(type_id) and grammar.is_valid_id(device_id)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected TYPE/ID with valid ids")
    return DeviceIdentity(type_id, device_id)


def _non_negative(convert: Callable[[str], float]) -> Callable[[str], Any]:
    def parse(text: str) -> float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not value >= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is negative")
        return value

    return parse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``emulator`` subcommand."""
    parser = subparsers.add_parser(
        "emulator",
        help="watch a broker as the platform would: print events, DM, violations live",
        description=(
            "Connect to a broker as a platform application, print every gateway event, command "
            "result, DM exchange and rule violation as it happens, answer the gateway's DM "
            "requests, and print a summary of violations on Ctrl-C."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    parser.add_argument("--org", required=True, help="organization id")
    parser.add_argument("--username", required=True, help="application user name (API key)")
    parser.add_argument(
        "--password-file", required=True, type=Path, help="file holding the password (token)"
    )
    parser.add_argument(
        "--app-id",
        default=f"watch-{os.getpid()}",
        help="application id; client id is a:ORG:APP_ID (default watch-PID)",
    )
    parser.add_argument("--tls-ca", type=Path, help="CA file; connects with TLS")
    parser.add_argument("--tls", action="store_true", help="TLS with the system trust store")
    parser.add_argument(
        "--send-command",
        action="append",
        type=parse_command_spec,
        default=[],
        metavar="TYPE/ID:CMD:JSON",
        help="send this command once connected (repeatable)",
    )
    parser.add_argument("--seconds", type=float, help="stop after this long (default: Ctrl-C)")
    parser.add_argument(
        "--gateway",
        type=parse_device,
        metavar="TYPE/ID",
        help="the gateway; every other device counts as attached to it",
    )
    parser.add_argument(
        "--registration-delay",
        type=_non_negative(float),
        metavar="SECONDS",
        help="model auto-registration: a new device is pending this long (needs --gateway)",
    )
    parser.add_argument(
        "--max-pending",
        type=_non_negative(int),
        default=128,
        metavar="N",
        help="pending registrations beyond which a new device is a violation (default 128)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the watcher until interrupted; exit code 0, or 66/69 when it cannot start."""
    # Imported here so that `edged run` (which builds this parser) never loads the emulator.
    from edged.emulator.emulator import EmulatorError, PlatformEmulator
    from edged.emulator.render import Renderer, format_summary, use_color

    if args.registration_delay is not None and args.gateway is None:
        print("edged emulator: --registration-delay needs --gateway", file=sys.stderr)
        return EX_USAGE
    try:
        password = args.password_file.read_text(encoding="utf-8").strip()
    except OSError as exc:
        print(f"edged emulator: cannot read {args.password_file}: {exc.strerror}", file=sys.stderr)
        return EX_NOINPUT
    out: TextIO = sys.stdout
    encoding = (getattr(out, "encoding", None) or "").lower().replace("-", "")
    renderer = Renderer(color=use_color(out), ascii_only=encoding != "utf8")
    emulator = PlatformEmulator(
        args.host,
        args.port,
        args.org,
        app_id=args.app_id,
        username=args.username,
        password=password,
        tls_ca_file=args.tls_ca,
        tls=args.tls,
        gateway=args.gateway,
        registration_delay=args.registration_delay,
        max_pending=args.max_pending,
    )
    emulator.add_listener(_printer(renderer, out))
    try:
        emulator.start()
    except EmulatorError as exc:
        print(f"edged emulator: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    stop = threading.Event()
    restore = _on_sigterm(stop.set)
    try:
        print(
            f"edged emulator: {emulator.client_id} watching {args.host}:{args.port}; "
            "Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        for spec in args.send_command:
            try:
                emulator.send_command(spec.device, spec.command, spec.data)
            except (EmulatorError, TimeoutError) as exc:
                print(f"edged emulator: command not sent: {exc}", file=sys.stderr)
        stop.wait(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
        restore()
    for line in format_summary(
        emulator.violations,
        events=len(emulator.events),
        devices=len(emulator.devices),
        commands=len(emulator.commands_sent),
        dm_exchanges=len(emulator.dm_exchanges),
    ):
        print(line, file=out)
    out.flush()
    return EX_OK


def _printer(renderer: Renderer, out: TextIO) -> Callable[[Record], None]:
    lock = threading.Lock()  # records arrive on the network thread and the main thread

    def show(record: Record) -> None:
        line = renderer.render(record)
        with lock:
            print(line, file=out, flush=True)

    return show


def _on_sigterm(callback: Callable[[], None]) -> Callable[[], None]:
    """Call ``callback`` on SIGTERM (main thread only); returns a function restoring the old
    handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def handler(signum: int, frame: FrameType | None) -> None:
        callback()

    previous = signal.signal(signal.SIGTERM, handler)

    def restore() -> None:
        signal.signal(signal.SIGTERM, previous)

    return restore
