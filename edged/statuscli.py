"""``edged status`` and ``edged reload``: talk to the running daemon over its control socket.

Exit codes follow the LSB convention for status: 0 running, 3 not running (or the socket cannot
be used), 1 the daemon refused or the answer was unreadable. ``edged reload`` exits 0 when the
config was applied, 1 when it was refused (its problems printed, one ``FILE:LINE:`` each) and 3
when the daemon is not running.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from edged.control import NotRunning, default_socket_path, request

EXIT_RUNNING = 0
EXIT_FAILED = 1
EXIT_NOT_RUNNING = 3
RELOAD_TIMEOUT = 60.0
"""A reload waits for running commands (``commands.timeout``) and stops runners (5 s)."""
MAX_SHOWN = 50
"""Devices and problems listed in the human-readable view (all are in --json)."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``status`` subcommand."""
    parser = sub.add_parser("status", help="show what the running daemon is doing")
    parser.add_argument(
        "--socket", default=None, help=f"control socket (default {default_socket_path()})"
    )
    parser.add_argument("--json", action="store_true", help="print the full answer as JSON")
    parser.add_argument(
        "--publish", action="store_true", help="also make the daemon publish its status event now"
    )
    parser.set_defaults(func=run)
    reload = sub.add_parser(
        "reload", help="make the running daemon re-read its config (like systemctl reload edged)"
    )
    reload.add_argument(
        "--socket", default=None, help=f"control socket (default {default_socket_path()})"
    )
    reload.set_defaults(func=run_reload)


def run_reload(args: argparse.Namespace) -> int:
    """Ask the daemon to reload; print what changed, or why the config was refused."""
    path = args.socket or default_socket_path()
    try:
        data = request(path, "reload", timeout=RELOAD_TIMEOUT)
    except NotRunning as exc:
        print(f"edged reload: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"edged reload: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if not data.get("applied"):
        for problem in data.get("problems", []):
            print(problem, file=sys.stderr)
        print("edged reload: refused; the daemon runs on with its config", file=sys.stderr)
        return EXIT_FAILED
    print(f"reloaded: {data.get('summary', '')}")
    for name in data.get("restart", []):
        print(f"  needs a restart: {name}")
    return EXIT_RUNNING


def run(args: argparse.Namespace) -> int:
    """Query the daemon and print its state."""
    path = args.socket or default_socket_path()
    try:
        if args.publish:
            request(path, "publish-status")
        data = request(path, "status")
    except NotRunning as exc:
        print(f"edged status: {exc}", file=sys.stderr)
        return EXIT_NOT_RUNNING
    except (RuntimeError, OSError, ValueError) as exc:
        print(f"edged status: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_INDENT_2) + b"\n")
    else:
        print(render(data))
    return EXIT_RUNNING


def render(data: dict[str, Any], now: float | None = None) -> str:
    """The human-readable view of a status answer."""
    now = time.time() if now is None else now
    report = data.get("report", {})
    uplink = report.get("uplink", {})
    outbox = report.get("outbox", {})
    registration = report.get("registration", {}).get("counts", {})
    lines = [
        f"edged {data.get('version')} (pid {data.get('pid')}), gateway {data.get('gateway')}, "
        f"up {_duration(report.get('uptime', 0))}",
        f"  {data.get('summary', '')}",
        f"  uplink:  {'connected' if uplink.get('connected') else 'NOT connected'}, "
        f"{uplink.get('reconnects', 0)} reconnects, {uplink.get('inflight', 0)} in flight",
        f"  outbox:  {outbox.get('depth', 0)} messages, {outbox.get('bytes', 0)} bytes, "
        f"oldest {_duration(outbox.get('oldestAge', 0))}",
        "  registration: "
        + ", ".join(f"{count} {state}" for state, count in registration.items() if count),
    ]
    dm = report.get("dm")
    if isinstance(dm, dict):
        standings = [entry.get("status") for entry in dm.get("devices", {}).values()]
        lines.append(
            "  device management: "
            + ", ".join(f"{standings.count(s)} {s}" for s in sorted(set(map(str, standings))))
        )
    devices = data.get("deviceDetail", [])
    troubled = [
        d
        for d in devices
        if d.get("state") != "online" or d.get("registration") not in (None, "registered")
    ]
    lines.append(f"devices: {len(devices)}, {len(troubled)} not online or not registered")
    for entry in troubled[:MAX_SHOWN]:
        since = _duration(now - entry.get("since", now))
        registration_state = entry.get("registration") or "-"
        retry = entry.get("retryIn")
        lines.append(
            f"  {entry['device']}: {entry['state']} for {since}, registration {registration_state}"
            + (f" (retry in {_duration(retry)})" if retry is not None else "")
            + (f": {entry['detail']}" if entry.get("detail") else "")
        )
    problems = data.get("recentProblems", [])
    if problems:
        lines.append("recent problems:")
        lines.extend(f"  {line}" for line in problems[-MAX_SHOWN:])
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"
