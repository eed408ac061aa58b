"""``edged app``: the platform's application side from a terminal (see ``docs/app.md``).

``watch`` prints device events, device status and application status as they come;
``command`` sends a command and can wait for the gateway's result; ``publish`` sends an event as
if from a device; ``dm`` sends a device-management request and prints the gateway's answer.
Settings and credentials come from a YAML file or ``EDGED_APP_*`` environment variables
(:mod:`edged.appclient.credentials`), never from the command line.

Exit codes:

===  ===================================================================================
0    done; ``command --wait-result``: the result's status is ``ok``; ``dm``: rc 2xx
1    ``command --wait-result``: status ``failed``; ``dm``: any other rc
3    ``command --wait-result``: status ``rejected``
4    ``command --wait-result``: status ``unsupported`` (unknown command or device)
5    ``command --wait-result``: status ``timeout`` (the gateway's own command timeout)
6    ``command --wait-result``: a status this version does not know
64   usage: a bad argument, id, payload, or what Quickstart does not allow
69   the broker could not be reached, or the connection was lost for good
77   the broker refused the API key or token (not retried)
78   the settings or credentials are missing or invalid
124  ``command --wait-result`` or ``dm``: no answer in time
130  interrupted (Ctrl-C)
===  ===================================================================================

The module is loaded for every ``edged`` command line; the client is imported only when an
``edged app`` command runs.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import json
import queue
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from edged.text import safe

if TYPE_CHECKING:
    from edged.appclient import AppClient, AppMessage
    from edged.model import DeviceIdentity

EX_OK = 0
EX_FAILED = 1
EX_REJECTED = 3
EX_UNSUPPORTED = 4
EX_RESULT_TIMEOUT = 5
EX_UNKNOWN_STATUS = 6
EX_USAGE = 64
EX_UNAVAILABLE = 69
EX_NOPERM = 77
EX_CONFIG = 78
EX_NO_ANSWER = 124
EX_INTERRUPTED = 130

STATUS_EXIT = {
    "ok": EX_OK,
    "failed": EX_FAILED,
    "rejected": EX_REJECTED,
    "unsupported": EX_UNSUPPORTED,
    "timeout": EX_RESULT_TIMEOUT,
}
"""The exit code of ``command --wait-result`` for each result status (docs/core.md)."""

DEFAULT_WAIT = 30.0
RAW_SHOWN = 64
"""Bytes of a payload that is not what its format says shown (as escaped bytes)."""
SUMMARY_CHARS = 160
QUEUE_SIZE = 10_000


class UsageError(Exception):
    """A bad argument: exit 64 with its message."""


# -- argument parsing ---------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``edged app`` and its subcommands."""
    parser = sub.add_parser(
        "app",
        help="the platform's application side: watch events and status, send commands",
        description="Act as a platform application (API key from --credentials or "
        "EDGED_APP_* variables; see docs/app.md).",
    )
    parser.add_argument(
        "--credentials",
        type=Path,
        default=None,
        metavar="FILE",
        help="settings and credentials (default ~/.config/edged/app.yaml when it exists; "
        "EDGED_APP_* variables override it)",
    )
    actions = parser.add_subparsers(dest="app_command", required=True, metavar="ACTION")

    watch = actions.add_parser("watch", help="print device events (and status) as they come")
    watch.add_argument("--type", default="+", help="device type (default: any)")
    watch.add_argument("--id", default="+", help="device id (default: any)")
    watch.add_argument("--event", default="+", help="event name (default: any)")
    watch.add_argument(
        "--status", action="store_true", help="also device status and application status (mon)"
    )
    watch.add_argument("--json", action="store_true", help="one JSON object per line")
    watch.add_argument("--count", type=int, default=None, help="stop after this many messages")
    watch.add_argument("--seconds", type=float, default=None, help="stop after this long")
    watch.set_defaults(func=run_watch)

    command = actions.add_parser("command", help="send a command to a device")
    _device_arguments(command)
    command.add_argument("command", metavar="COMMAND")
    _data_arguments(command)
    command.add_argument(
        "--wait-result",
        nargs="?",
        type=float,
        const=DEFAULT_WAIT,
        default=None,
        metavar="SECONDS",
        help=f"wait for the gateway's result event (default {DEFAULT_WAIT:g} s); "
        "the exit code tells its status",
    )
    command.add_argument(
        "--result-event", default="cmdResult", help="the result event's name (default cmdResult)"
    )
    command.add_argument("--qos", type=int, choices=(0, 1, 2), default=1)
    command.set_defaults(func=run_command)

    publish = actions.add_parser("publish", help="publish an event as if from a device")
    _device_arguments(publish)
    publish.add_argument("event", metavar="EVENT")
    _data_arguments(publish)
    publish.add_argument("--qos", type=int, choices=(0, 1, 2), default=0)
    publish.set_defaults(func=run_publish)

    dm = actions.add_parser("dm", help="send a device-management request and print the answer")
    _device_arguments(dm)
    dm.add_argument("request", metavar="REQUEST", help="e.g. observe, mgmt/initiate/device/reboot")
    dm.add_argument("--data", default=None, help="the request's d member: JSON or @file")
    dm.add_argument("--timeout", type=float, default=DEFAULT_WAIT, help="seconds to wait")
    dm.set_defaults(func=run_dm)


def _device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("type_id", metavar="TYPE")
    parser.add_argument("device_id", metavar="ID")


def _data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=None, help="the payload: JSON (or text), or @file")
    parser.add_argument("--fmt", default="json", help="the format level (default json)")


def read_data(text: str | None, fmt: str) -> object:
    """The payload of ``--data``: ``@file`` reads a file; with format ``json`` it must be JSON.

    Raises:
        UsageError: the file cannot be read, or the text is not JSON for ``json``.
    """
    if text is None:
        return {} if fmt == "json" else b""
    raw: bytes | str = text
    if text.startswith("@"):
        try:
            raw = Path(text[1:]).read_bytes()
        except OSError as exc:
            raise UsageError(f"--data {safe(text, 80)}: {exc.strerror or exc}") from None
    if fmt != "json":
        return raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise UsageError(f"--data is not JSON ({safe(exc, 80)})") from None


# -- running ------------------------------------------------------------------------------------


class _Session:
    """The client of one ``edged app`` command, its connection reports and its messages."""

    def __init__(self, args: argparse.Namespace, err: TextIO) -> None:
        from edged.appclient import AppClient
        from edged.appclient.credentials import load

        self.err = err
        loaded = load(args.credentials)
        for warning in loaded.warnings:
            print(f"edged app: warning: {warning}", file=err)
        self.messages: queue.Queue[AppMessage] = queue.Queue(QUEUE_SIZE)
        self.dropped = 0
        self.client: AppClient = AppClient(loaded.config, on_state=self._state)
        self.client.add_listener(self._put)

    def _state(self, state: str, detail: str) -> None:
        # The network thread. paho retries with a delay doubling up to 30 s.
        if state == "lost":
            print(f"edged app: connection lost ({safe(detail)}); retrying", file=self.err)
        elif state == "connected":
            print("edged app: reconnected", file=self.err)
        self.err.flush()

    def _put(self, message: AppMessage) -> None:
        try:
            self.messages.put_nowait(message)
        except queue.Full:
            self.dropped += 1

    def next(self, timeout: float) -> AppMessage | None:
        """The next message, or ``None`` after ``timeout`` seconds."""
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            return None


def _streams(out: TextIO | None, err: TextIO | None) -> tuple[TextIO, TextIO]:
    return out or sys.stdout, err or sys.stderr


def _run(args: argparse.Namespace, body: Any, out: TextIO, err: TextIO, **quickstart: Any) -> int:
    """Load settings, check ``quickstart`` restrictions (see :func:`check_quickstart`) before
    connecting, connect, run ``body(session)``; every failure becomes its exit code."""
    from edged.appclient import AppClientError, IdentityError
    from edged.appclient.credentials import CredentialsError
    from edged.appclient.identity import check_quickstart

    try:
        session = _Session(args, err)
        check_quickstart(session.client.identity.org, **quickstart)
    except CredentialsError as exc:
        print(f"edged app: {exc}", file=err)
        return EX_CONFIG
    except IdentityError as exc:
        print(f"edged app: {exc}", file=err)
        return EX_USAGE
    client = session.client
    previous = signal.getsignal(signal.SIGTERM)
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)
    try:
        client.start()
        print(f"edged app: connected as {client.client_id}", file=err)
        return int(body(session))
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except (AppClientError, UsageError, ValueError, TimeoutError) as exc:
        code, hint = _failure(exc)
        print(f"edged app: {exc}{hint}", file=err)
        return code
    finally:
        client.stop()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, previous)
        out.flush()


def _failure(exc: Exception) -> tuple[int, str]:
    """The exit code of a failed command, and a hint to follow its message."""
    from edged.appclient import AuthRefused

    if isinstance(exc, AuthRefused):
        return EX_NOPERM, " (check the API key and token)"
    if isinstance(exc, UsageError | ValueError):  # IdentityError: what Quickstart refuses
        return EX_USAGE, ""
    if isinstance(exc, TimeoutError):
        return EX_NO_ANSWER, ""
    return EX_UNAVAILABLE, ""


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _device(type_id: str, device_id: str) -> DeviceIdentity:
    from edged.appclient import grammar
    from edged.model import DeviceIdentity

    for what, value in (("TYPE", type_id), ("ID", device_id)):
        if not grammar.is_valid_id(value):
            raise UsageError(
                f"{what} {safe(value, 40)!r}: 1-36 of letters, digits, '-', '_' and '.'"
            )
    return DeviceIdentity(type_id, device_id)


def run_watch(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``edged app watch``."""
    out, err = _streams(out, err)

    def body(session: _Session) -> int:
        client = session.client
        client.subscribe_events(args.type, args.id, args.event)
        if args.status:
            client.subscribe_device_status(args.type, args.id)
            client.subscribe_app_status()
        print(f"edged app: watching {_what(args)}", file=err, flush=True)
        seen = 0
        deadline = None if args.seconds is None else time.monotonic() + args.seconds
        while args.count is None or seen < args.count:
            if deadline is not None and time.monotonic() >= deadline:
                break
            fatal = client.fatal_error
            if fatal is not None:
                print(f"edged app: {fatal} (check the API key and token)", file=err)
                return EX_NOPERM
            message = session.next(0.2)
            if message is None:
                continue
            seen += 1
            print(render_json(message) if args.json else render_line(message), file=out)
            out.flush()
        if session.dropped:
            print(f"edged app: {session.dropped} message(s) dropped (output too slow)", file=err)
        return EX_OK

    return _run(args, body, out, err, ids=(args.type, args.id))


def _what(args: argparse.Namespace) -> str:
    text = f"events {args.event} of {args.type}:{args.id}"
    return text + ", device and application status" if args.status else text


def run_command(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``edged app command``: exit code by the result's status when waiting (module docs)."""
    out, err = _streams(out, err)
    import uuid

    def body(session: _Session) -> int:
        device = _device(args.type_id, args.device_id)
        data = read_data(args.data, args.fmt)
        req_id: str | None = None
        if args.wait_result is not None:
            if isinstance(data, dict):
                data.setdefault("reqId", str(uuid.uuid4()))
                req_id = str(data["reqId"])
            session.client.subscribe_events(
                device.type_id, device.device_id, args.result_event, "+", qos=1
            )
        topic = session.client.publish_command(device, args.command, data, args.fmt, args.qos)
        print(f"sent {topic}" + (f" reqId {req_id}" if req_id else ""), file=out, flush=True)
        if args.wait_result is None:
            return EX_OK
        result = _wait_result(session, args, req_id)
        print(render_line(result), file=out)
        decoded = result.json()
        status = decoded.get("status") if isinstance(decoded, dict) else None
        return STATUS_EXIT.get(str(status), EX_UNKNOWN_STATUS)

    return _run(args, body, out, err, command=True)


def _wait_result(session: _Session, args: argparse.Namespace, req_id: str | None) -> AppMessage:
    deadline = time.monotonic() + args.wait_result
    while (remaining := deadline - time.monotonic()) > 0:
        if session.client.fatal_error is not None:
            raise TimeoutError(f"no result: {session.client.fatal_error}")
        message = session.next(min(remaining, 0.2))
        if message is None or message.kind != "event" or message.name != args.result_event:
            continue
        decoded = message.json()
        if not isinstance(decoded, dict):
            continue
        if req_id is not None and decoded.get("reqId") == req_id:
            return message
        if req_id is None and decoded.get("command") == args.command:
            return message
    raise TimeoutError(f"no {args.result_event} event within {args.wait_result:g} s")


def run_publish(
    args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """``edged app publish``."""
    out, err = _streams(out, err)

    def body(session: _Session) -> int:
        device = _device(args.type_id, args.device_id)
        data = read_data(args.data, args.fmt)
        topic = session.client.publish_event(device, args.event, data, args.fmt, args.qos)
        print(f"sent {topic}", file=out)
        return EX_OK

    return _run(args, body, out, err)


def run_dm(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """``edged app dm``: prints the answer as JSON; exit 0 for rc 2xx, 1 otherwise."""
    out, err = _streams(out, err)

    def body(session: _Session) -> int:
        device = _device(args.type_id, args.device_id)
        d = read_data(args.data, "json") if args.data is not None else None
        answer = session.client.dm_request(device, args.request, d, args.timeout)
        print(json.dumps(answer, ensure_ascii=False), file=out)
        rc = answer.get("rc")
        return EX_OK if isinstance(rc, int) and 200 <= rc < 300 else EX_FAILED

    return _run(args, body, out, err, dm=True)


# -- rendering ----------------------------------------------------------------------------------


def _time(at: float) -> str:
    moment = datetime.datetime.fromtimestamp(at, datetime.UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def raw_bytes(payload: bytes, limit: int = RAW_SHOWN) -> str:
    """``payload`` as escaped bytes, cut to ``limit`` bytes with the rest counted."""
    shown = repr(payload[:limit])
    return shown + (f"...(+{len(payload) - limit} bytes)" if len(payload) > limit else "")


def summary(message: AppMessage) -> str:
    """The payload in short: compact JSON, text, or raw bytes when it is not what it claims."""
    if message.kind in {"device-status", "app-status"}:
        decoded = message.json()
        if isinstance(decoded, dict) and "Action" in decoded:
            fields = ("ClientID", "ClientAddr", "Reason")
            extra = " ".join(f"{f}={safe(decoded[f], 60)}" for f in fields if decoded.get(f))
            return safe(decoded["Action"], 40) + (f" {extra}" if extra else "")
    if message.format in ("json", "") or message.kind in ("dm", "device-status", "app-status"):
        decoded = message.json()
        if decoded is None and message.payload.strip() != b"null":
            return f"malformed (not JSON): {raw_bytes(message.payload)}"
        text = json.dumps(decoded, separators=(",", ":"), ensure_ascii=False)
        return safe(text, SUMMARY_CHARS)
    try:
        return safe(message.payload.decode("utf-8"), SUMMARY_CHARS)
    except UnicodeDecodeError:
        return raw_bytes(message.payload)


def render_line(message: AppMessage) -> str:
    """One readable line: time, device, what, payload summary."""
    device = message.device
    who = f"{device.type_id}:{device.device_id}" if device is not None else "-"
    match message.kind:
        case "event":
            what = f"evt {safe(message.name, 60)}"
        case "command":
            what = f"cmd {safe(message.name, 60)}"
        case "device-status":
            what = "status"
        case "app-status":
            who, what = f"app:{safe(message.name, 40)}", "status"
        case "dm":
            what = f"dm {safe(message.name, 60)}"
        case _:
            who, what = "-", safe(message.topic, 120)
    return f"{_time(message.received_at)} {who} {what} {summary(message)}"


def render_json(message: AppMessage) -> str:
    """One JSON object: time, kind, topic, type, id, name, format, and the payload (decoded
    when it is JSON, else as ``payloadText`` or ``payloadBase64``)."""
    device = message.device
    record: dict[str, Any] = {
        "time": _time(message.received_at),
        "kind": message.kind,
        "topic": message.topic,
        "type": device.type_id if device is not None else None,
        "id": device.device_id if device is not None else None,
        "name": message.name or None,
        "format": message.format or None,
    }
    decoded = message.json()
    if decoded is not None or message.payload.strip() == b"null":
        record["payload"] = decoded
    else:
        try:
            record["payloadText"] = message.payload.decode("utf-8")
        except UnicodeDecodeError:
            record["payloadBase64"] = base64.b64encode(message.payload).decode("ascii")
    return json.dumps(record, ensure_ascii=False)
