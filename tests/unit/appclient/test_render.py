"""What ``edged app`` prints: one line per message, JSON lines, malformed payloads as bytes."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from edged.appcli import UsageError, raw_bytes, read_data, render_json, render_line
from edged.appclient.messages import classify

AT = 1_767_225_600.25  # 2026-01-01T00:00:00.250Z


def test_an_event_line() -> None:
    message = classify(
        "iot-2/type/boiler/id/b-1/evt/reading/fmt/json", b'{"d": {"t": 21.5}}', at=AT
    )
    assert (
        render_line(message) == '2026-01-01T00:00:00.250Z boiler:b-1 evt reading {"d":{"t":21.5}}'
    )


def test_a_malformed_json_payload_is_shown_as_truncated_bytes() -> None:
    payload = b"\x00\xff{not json" + b"x" * 100
    message = classify("iot-2/type/boiler/id/b-1/evt/reading/fmt/json", payload, at=AT)
    line = render_line(message)
    assert line.startswith("2026-01-01T00:00:00.250Z boiler:b-1 evt reading malformed (not JSON): ")
    assert "b'\\x00\\xff{not json" in line and line.endswith("...(+47 bytes)")
    record = json.loads(render_json(message))
    assert base64.b64decode(record["payloadBase64"]) == payload
    assert "payload" not in record


def test_text_and_binary_formats() -> None:
    text = classify("iot-2/type/t/id/d/evt/log/fmt/txt", b"line one\nline two", at=AT)
    assert render_line(text).endswith("evt log line one\\nline two")
    assert json.loads(render_json(text))["payloadText"] == "line one\nline two"
    binary = classify("iot-2/type/t/id/d/evt/raw/fmt/bin", b"\x80\x81", at=AT)
    assert render_line(binary).endswith("evt raw b'\\x80\\x81'")


def test_a_long_payload_is_cut() -> None:
    message = classify("iot-2/type/t/id/d/evt/e/fmt/json", json.dumps({"k": "v" * 500}).encode())
    assert render_line(message).endswith("...(+348 chars)")


def test_device_and_application_status() -> None:
    mon = json.dumps(
        {
            "Action": "Disconnect",
            "ClientID": "g:org1:gw:gw-1",
            "Reason": "The connection has completed normally.",
            "ClientAddr": "10.0.0.7",
        }
    ).encode()
    device = classify("iot-2/type/gw/id/gw-1/mon", mon, retain=True, at=AT)
    assert render_line(device) == (
        "2026-01-01T00:00:00.250Z gw:gw-1 status Disconnect ClientID=g:org1:gw:gw-1 "
        "ClientAddr=10.0.0.7 Reason=The connection has completed normally."
    )
    app = classify("iot-2/app/ops/mon", b'{"Action": "Connect"}', at=AT)
    assert render_line(app) == "2026-01-01T00:00:00.250Z app:ops status Connect"
    record = json.loads(render_json(app))
    assert (record["kind"], record["name"], record["type"]) == ("app-status", "ops", None)


def test_a_forged_log_line_stays_one_line() -> None:
    message = classify("iot-2/type/t/id/d/evt/e/fmt/txt", b"ok\n2026-01-01 fake line\x1b[2J")
    line = render_line(message)
    assert "\n" not in line and "\x1b" not in line


def test_json_lines_carry_everything_for_scripts() -> None:
    message = classify("iot-2/type/t/id/d/evt/e/fmt/json", b'{"a": [1, null]}', qos=1, at=AT)
    assert json.loads(render_json(message)) == {
        "time": "2026-01-01T00:00:00.250Z",
        "kind": "event",
        "topic": "iot-2/type/t/id/d/evt/e/fmt/json",
        "type": "t",
        "id": "d",
        "name": "e",
        "format": "json",
        "payload": {"a": [1, None]},
    }


def test_raw_bytes() -> None:
    assert raw_bytes(b"abc") == "b'abc'"
    assert raw_bytes(b"a" * 70, limit=4) == "b'aaaa'...(+66 bytes)"


def test_data_arguments(tmp_path: Path) -> None:
    assert read_data(None, "json") == {}
    assert read_data('{"a": 1}', "json") == {"a": 1}
    assert read_data("hello", "txt") == b"hello"
    body = tmp_path / "body.json"
    body.write_bytes(b'{"from": "file"}')
    assert read_data(f"@{body}", "json") == {"from": "file"}
    assert read_data(f"@{body}", "bin") == b'{"from": "file"}'
    with pytest.raises(UsageError, match="--data is not JSON"):
        read_data("{nope", "json")
    with pytest.raises(UsageError, match="No such file"):
        read_data(f"@{tmp_path / 'missing'}", "json")
