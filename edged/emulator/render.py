"""One aligned terminal line per emulator record, for the demo and ``edged emulator``.

    12:00:01.234  ← boiler-1 (modbus-meter)       reading         temperature=21.5 pressure=1.02
    12:00:02.001  → boiler-1 (modbus-meter)       setpoint        value=22 reqId=c1
    12:00:02.015  ← boiler-1 (modbus-meter)       cmdResult       setpoint ok reqId=c1
    12:00:03.100  ← gw-0001 (test-gw)             mgmt/manage     lifetime=3600 ⇒ 200
    12:00:04.000  ! VIOLATION retain              iot-2/type/...  retain flag set: ...

Colour is used only when asked for (:func:`use_color`: a terminal and ``NO_COLOR`` unset).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

import orjson

from edged.emulator.records import (
    DMExchange,
    ReceivedEvent,
    Record,
    SentCommand,
    SentNotify,
    Violation,
)
from edged.model import DeviceIdentity

RESET = "\x1b[0m"
DIM = "\x1b[2m"
BOLD = "\x1b[1m"
RED = "\x1b[31m"
GREEN = "\x1b[32m"
YELLOW = "\x1b[33m"
BLUE = "\x1b[34m"
MAGENTA = "\x1b[35m"
CYAN = "\x1b[36m"

_WHO_WIDTH = 28
_WHAT_WIDTH = 14


def use_color(stream: TextIO) -> bool:
    """Colour when ``stream`` is a terminal and ``NO_COLOR`` is unset or empty (no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty is not None and isatty()) and not os.environ.get("NO_COLOR")


def format_scalar(value: Any) -> str:
    """A JSON value as it reads best on a line: bare words and numbers, quoted strings when
    needed, compact JSON for lists."""
    if isinstance(value, str):
        plain = value and not any(c.isspace() or c in "=\"'" for c in value)
        return value if plain else orjson.dumps(value).decode()
    if isinstance(value, float):
        return repr(value)
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def format_values(values: Any, prefix: str = "") -> str:
    """``key=value`` pairs for an object (nested keys joined with ``.``), else one value."""
    if not isinstance(values, Mapping):
        return format_scalar(values)
    parts: list[str] = []
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            parts.append(format_values(value, f"{name}."))
        else:
            parts.append(f"{name}={format_scalar(value)}")
    return " ".join(parts)


def format_payload(payload: bytes, data: Any) -> str:
    """A body: its values when it decoded as JSON, else its text or size."""
    if data is not None:
        return format_values(data)
    if not payload:
        return "(empty)"
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = ""
    if text and all(c.isprintable() or c in "\n\r\t" for c in text):
        return orjson.dumps(text).decode()  # quoted, newlines escaped
    more = "+" if len(payload) > 16 else ""
    return f"<{len(payload)} bytes: {payload[:16].hex()}{more}>"


class Renderer:
    """Formats records as single lines.

    Args:
        color: Add ANSI colours.
        ascii_only: Use ``<-``, ``->``, ``=>`` and ``...`` instead of arrows and the ellipsis,
            for terminals without UTF-8.
        max_width: Cut lines longer than this many characters (``0``: never).
    """

    def __init__(self, *, color: bool = False, ascii_only: bool = False, max_width: int = 200):
        self.color = color
        self.max_width = max_width
        self._in, self._out = ("<-", "->") if ascii_only else ("←", "→")
        self._answered, self._asked = ("=>", "<=") if ascii_only else ("⇒", "⇐")
        self._ellipsis = "..." if ascii_only else "…"

    def _paint(self, text: str, *styles: str) -> str:
        return f"{''.join(styles)}{text}{RESET}" if self.color and styles else text

    def _line(
        self,
        at: float,
        arrow: str,
        who: str,
        what: str,
        detail: str,
        *,
        what_style: str = BOLD,
        plain: bool = False,
    ) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(at)) + f".{int(at * 1000) % 1000:03d}"
        plain_head = f"{stamp}  {arrow} {who:<{_WHO_WIDTH}}  {what:<{_WHAT_WIDTH}}  "
        room = self.max_width - len(plain_head) if self.max_width else 0
        if self.max_width and len(detail) > room:
            detail = detail[: max(room - len(self._ellipsis), 0)] + self._ellipsis
        if plain or not self.color:
            return (plain_head + detail).rstrip()
        head = (
            f"{self._paint(stamp, DIM)}  {arrow} {self._paint(f'{who:<{_WHO_WIDTH}}', CYAN)}  "
            f"{self._paint(f'{what:<{_WHAT_WIDTH}}', what_style)}  "
        )
        return (head + detail).rstrip()

    @staticmethod
    def _who(device: DeviceIdentity) -> str:
        return f"{device.device_id} ({device.type_id})"

    def event(self, event: ReceivedEvent) -> str:
        """An event from the gateway (``cmdResult`` events are shown as command results)."""
        if event.is_command_result and isinstance(event.data, dict):
            return self.command_result(event)
        detail = format_payload(event.payload, event.values)
        if event.format != "json":
            detail = f"[{event.format}] {detail}"
        return self._line(event.received_at, self._in, self._who(event.device), event.event, detail)

    def command_result(self, event: ReceivedEvent) -> str:
        """A ``cmdResult`` event: ``{"command", "reqId", "status", "error", "d", "ts"}``."""
        body: Mapping[str, Any] = event.data if isinstance(event.data, dict) else {}
        status = str(body.get("status", "?"))
        parts = [
            str(body.get("command", "?")),
            self._paint(status, GREEN if status == "ok" else RED),
        ]
        if body.get("reqId") is not None:
            parts.append(f"reqId={format_scalar(body['reqId'])}")
        if body.get("error"):
            parts.append(f"error={format_scalar(body['error'])}")
        if isinstance(body.get("d"), Mapping) and body["d"]:
            parts.append(format_values(body["d"]))
        return self._line(
            event.received_at,
            self._in,
            self._who(event.device),
            event.event,
            " ".join(parts),
            what_style=MAGENTA,
        )

    def command(self, command: SentCommand) -> str:
        """A command the emulator sent."""
        detail = format_payload(command.payload, command.data)
        if command.format != "json":
            detail = f"[{command.format}] {detail}"
        return self._line(
            command.at,
            self._out,
            self._who(command.device),
            command.command,
            detail,
            what_style=BLUE,
        )

    def notify(self, sent: SentNotify) -> str:
        """A notify message the emulator sent to a gateway."""
        body = sent.body
        parts = [format_scalar(body.get("Message", ""))]
        if "Type" in body and "Id" in body:
            parts.append(f"device={body['Type']}/{body['Id']}")
        parts.append(f"RC={format_scalar(body.get('RC'))}")
        parts.append(f"Topic={body.get('Topic', '')}")
        return self._line(
            sent.at,
            self._out,
            self._who(sent.gateway),
            "notify",
            " ".join(parts),
            what_style=YELLOW,
        )

    def dm(self, exchange: DMExchange) -> str:
        """A DM exchange: the gateway's request and the emulator's answer, or the reverse."""
        request, response = exchange.request, exchange.response
        parts = []
        if request.body is None:
            parts.append(format_payload(request.payload, None))
        elif isinstance(request.d, Mapping) and request.d:
            parts.append(format_values(request.d))
        if exchange.initiator == "gateway":
            arrow, mark = self._in, self._answered
        else:
            arrow, mark = self._out, self._asked
        if response is None:
            parts.append(f"{mark} {self._paint('no answer', YELLOW)}")
        else:
            rc = response.rc
            text = str(rc) if rc is not None else "rc?"
            ok = rc is not None and 200 <= rc < 300
            parts.append(f"{mark} {self._paint(text, GREEN if ok else RED)}")
            if response.body is not None and response.body.get("message"):
                parts.append(format_scalar(response.body["message"]))
            if exchange.initiator == "platform" and response.d:
                parts.append(format_values(response.d))
        return self._line(
            request.at,
            arrow,
            self._who(request.device),
            request.suffix,
            " ".join(parts),
            what_style=YELLOW,
        )

    def violation(self, violation: Violation, at: float | None = None) -> str:
        """A rule violation (``at`` defaults to now)."""
        label = f"VIOLATION {violation.rule}"
        when = time.time() if at is None else at
        line = self._line(when, "!", label, violation.topic, violation.detail, plain=True)
        return self._paint(line, RED, BOLD)

    def render(self, record: Record, at: float | None = None) -> str:
        """Any record as one line."""
        if isinstance(record, ReceivedEvent):
            return self.event(record)
        if isinstance(record, SentCommand):
            return self.command(record)
        if isinstance(record, SentNotify):
            return self.notify(record)
        if isinstance(record, DMExchange):
            return self.dm(record)
        return self.violation(record, at)


def format_summary(
    violations: Sequence[Violation],
    *,
    events: int,
    devices: int,
    commands: int,
    dm_exchanges: int,
    examples: int = 10,
) -> list[str]:
    """The closing summary: counts, then violations by rule with up to ``examples`` of them."""
    lines = [
        f"{events} event(s) from {devices} device(s), {commands} command(s) sent, "
        f"{dm_exchanges} DM exchange(s)"
    ]
    if not violations:
        lines.append("no violations")
        return lines
    by_rule = Counter(v.rule for v in violations)
    rules = ", ".join(f"{rule} x{count}" for rule, count in sorted(by_rule.items()))
    lines.append(f"{len(violations)} violation(s): {rules}")
    lines.extend(f"  {v.rule}: {v.topic}: {v.detail}" for v in violations[:examples])
    if len(violations) > examples:
        lines.append(f"  ... and {len(violations) - examples} more")
    return lines
