"""The two firmware requests as parsed from the wire."""

from __future__ import annotations

import orjson

from edged.dm import requests as rq


def test_firmware_requests_parse() -> None:
    for step in ("download", "update"):
        parsed = rq.parse(f"mgmt/initiate/firmware/{step}", orjson.dumps({"reqId": "r"}))
        assert parsed == rq.FirmwareAction("r", step)
    unknown = rq.parse("mgmt/initiate/firmware/flash", orjson.dumps({"reqId": "r"}))
    assert isinstance(unknown, rq.Problem) and unknown.rc == 404
    anonymous = rq.parse("mgmt/initiate/firmware/download", b"{}")
    assert anonymous == rq.Problem(None, 400, "a reqId is required")
