"""Event and result encoding."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
from hypothesis import given
from hypothesis import strategies as st

from edged import codec
from edged.model import Command, CommandResult, CommandStatus, DeviceIdentity


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_iso_time_matches_datetime(timestamp: float) -> None:
    expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    assert codec.iso_time(timestamp) == expected.replace("+00:00", "Z")


def test_event_and_result_bodies() -> None:
    assert orjson.loads(codec.encode_event({"t": 1.5, "ok": True}, 0.5)) == {
        "ts": "1970-01-01T00:00:00.500Z",
        "d": {"t": 1.5, "ok": True},
    }
    command = Command(DeviceIdentity("t", "d"), "set", "json", b"{}", {}, "r-1")
    body = orjson.loads(
        codec.encode_command_result(CommandResult(command, CommandStatus.REJECTED, "bad"), 0)
    )
    assert body == {
        "command": "set",
        "reqId": "r-1",
        "status": "rejected",
        "error": "bad",
        "d": {},
        "ts": "1970-01-01T00:00:00.000Z",
    }
