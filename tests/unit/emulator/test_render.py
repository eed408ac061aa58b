"""The terminal renderer: one aligned line per record, colour only when asked."""

from __future__ import annotations

import io
import time

import orjson
import pytest

from edged.emulator.records import (
    DMExchange,
    DMMessage,
    ReceivedEvent,
    SentCommand,
    SentNotify,
    Violation,
)
from edged.emulator.render import (
    RESET,
    Renderer,
    format_payload,
    format_summary,
    format_values,
    use_color,
)
from edged.model import DeviceIdentity

BOILER = DeviceIdentity("modbus-meter", "boiler-1")
GATEWAY = DeviceIdentity("test-gw", "gw-0001")
# 12:00:01.234 local time, whatever the machine's time zone
AT = time.mktime((2026, 1, 5, 12, 0, 1, 0, 0, -1)) + 0.234


def received(device: DeviceIdentity, name: str, body: object, fmt: str = "json") -> ReceivedEvent:
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    data = None if isinstance(body, bytes) else body
    topic = f"iot-2/type/{device.type_id}/id/{device.device_id}/evt/{name}/fmt/{fmt}"
    return ReceivedEvent(device, name, fmt, topic, payload, data, 1, False, AT)


def test_event_line_is_aligned_and_readable() -> None:
    line = Renderer().render(
        received(BOILER, "reading", {"ts": "x", "d": {"temperature": 21.5, "pressure": 1.02}})
    )
    assert line == (
        "12:00:01.234  ← boiler-1 (modbus-meter)       reading         "
        "temperature=21.5 pressure=1.02"
    )
    other = Renderer().render(received(GATEWAY, "status", {"d": {"up": True}}))
    assert other.index("status") == line.index("reading")


def test_values_formatting() -> None:
    values = {"a": "word", "b": "two words", "c": None, "n": {"x": 1, "y": [1, 2]}, "e": {}}
    assert format_values(values) == 'a=word b="two words" c=null n.x=1 n.y=[1,2] e={}'
    assert format_values([1, "x"]) == '[1,"x"]'
    assert format_values("") == '""'
    assert format_payload(b"", None) == "(empty)"
    assert format_payload(b"plain text\n", None) == '"plain text\\n"'
    assert format_payload(b"\x00\x01", None) == "<2 bytes: 0001>"
    assert format_payload(b"\xff" * 20, None) == f"<20 bytes: {'ff' * 16}+>"


def test_non_json_event_shows_its_format() -> None:
    line = Renderer().render(received(BOILER, "raw", b"\x01\x02", fmt="bin"))
    assert line.endswith("raw             [bin] <2 bytes: 0102>")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"command": "setpoint", "reqId": "c1", "status": "ok", "error": None,
             "d": {"value": 22}, "ts": "x"},
            "cmdResult       setpoint ok reqId=c1 value=22",
        ),
        (
            {"command": "start", "reqId": None, "status": "failed", "error": "modbus timeout",
             "d": {}, "ts": "x"},
            'cmdResult       start failed error="modbus timeout"',
        ),
    ],
)  # fmt: skip
def test_command_result(body: dict[str, object], expected: str) -> None:
    line = Renderer().render(received(BOILER, "cmdResult", body))
    assert line.endswith(expected)
    assert "←" in line


def test_command_sent() -> None:
    topic = "iot-2/type/modbus-meter/id/boiler-1/cmd/setpoint/fmt/json"
    sent = SentCommand(BOILER, "setpoint", "json", topic, b"{}", {"value": 22}, 1, AT)
    assert Renderer().render(sent) == (
        "12:00:01.234  → boiler-1 (modbus-meter)       setpoint        value=22"
    )


def _dm(direction: str, device: DeviceIdentity, suffix: str, body: object) -> DMMessage:
    payload = orjson.dumps(body) if body is not None else b"garbage"
    mapping = body if isinstance(body, dict) else None
    return DMMessage(direction, device, suffix, "t", payload, mapping, None, AT)  # type: ignore[arg-type]


def test_dm_exchanges() -> None:
    renderer = Renderer()
    manage = _dm("up", GATEWAY, "mgmt/manage", {"reqId": "1", "d": {"lifetime": 3600}})
    ok = _dm("down", GATEWAY, "response", {"rc": 200, "reqId": "1"})
    assert renderer.render(DMExchange("gateway", manage, ok)).endswith(
        "← gw-0001 (test-gw)             mgmt/manage     lifetime=3600 ⇒ 200"
    )
    refused = _dm("down", GATEWAY, "response", {"rc": 404, "reqId": "1", "message": "unknown"})
    assert renderer.render(DMExchange("gateway", manage, refused)).endswith("⇒ 404 unknown")
    garbage = _dm("up", GATEWAY, "mgmt/manage", None)
    assert renderer.render(DMExchange("gateway", garbage, None)).endswith('"garbage" ⇒ no answer')
    reboot = _dm("down", BOILER, "mgmt/initiate/device/reboot", {"reqId": "2"})
    accepted = _dm("up", BOILER, "response", {"rc": 202, "reqId": "2", "d": {"x": 1}})
    line = renderer.render(DMExchange("platform", reboot, accepted))
    assert "→ boiler-1 (modbus-meter)" in line
    assert line.endswith("mgmt/initiate/device/reboot  ⇐ 202 x=1")


def test_notify_sent() -> None:
    body = {"Request": "publish", "Topic": "iot-2/t", "Type": "t", "Id": "d", "RC": 400,
            "Message": "Device type is not valid."}  # fmt: skip
    line = Renderer().render(SentNotify(GATEWAY, "n", body, AT))
    assert line.endswith(
        'notify          "Device type is not valid." device=t/d RC=400 Topic=iot-2/t'
    )


def test_violation() -> None:
    violation = Violation("a/b", "retain", "retain flag set")
    assert Renderer().render(violation, AT) == (
        "12:00:01.234  ! VIOLATION retain              a/b             retain flag set"
    )
    coloured = Renderer(color=True).render(violation, AT)
    assert coloured.startswith("\x1b[31m\x1b[1m12:00:01.234")
    assert coloured.endswith(RESET)


def test_colour_and_ascii_and_width() -> None:
    event = received(BOILER, "reading", {"d": {"t": 1}})
    coloured = Renderer(color=True).render(event)
    assert "\x1b[36mboiler-1 (modbus-meter)" in coloured
    assert "\x1b[" not in Renderer().render(event)
    assert "<- boiler-1" in Renderer(ascii_only=True).render(event)
    long = received(BOILER, "reading", {"d": {"blob": "x" * 500}})
    line = Renderer(max_width=100).render(long)
    assert len(line) == 100
    assert line.endswith("…")
    assert len(Renderer(max_width=0).render(long)) > 500


def test_use_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_color(Tty())
    assert not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())
    monkeypatch.setenv("NO_COLOR", "")
    assert use_color(Tty())


def test_summary() -> None:
    assert format_summary([], events=3, devices=2, commands=1, dm_exchanges=0) == [
        "3 event(s) from 2 device(s), 1 command(s) sent, 0 DM exchange(s)",
        "no violations",
    ]
    violations = [Violation(f"t{i}", "retain" if i % 2 else "topic", "x") for i in range(4)]
    lines = format_summary(violations, events=0, devices=0, commands=0, dm_exchanges=0, examples=2)
    assert lines[1] == "4 violation(s): retain x2, topic x2"
    assert lines[2:] == ["  topic: t0: x", "  retain: t1: x", "  ... and 2 more"]
