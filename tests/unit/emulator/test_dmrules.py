"""The shape of DM messages a gateway sends (PROTOCOL.md §4)."""

from __future__ import annotations

from typing import Any

import pytest

from edged.emulator import dmrules as dm


def problems(suffix: str, body: dict[str, Any], **kwargs: Any) -> list[str]:
    return [detail for _, detail in dm.check_body(suffix, body, **kwargs)]


@pytest.mark.parametrize(
    ("suffix", "body"),
    [
        (dm.RESPONSE, {"rc": 202, "reqId": "a"}),
        (dm.RESPONSE, {"rc": 200, "reqId": "a", "message": "", "d": {"fields": []}}),
        (dm.MANAGE, {"reqId": "a"}),
        (
            dm.MANAGE,
            {
                "reqId": "a",
                "d": {
                    "lifetime": 3600,
                    "supports": {"deviceActions": True, "firmwareActions": False, "b1": True},
                    "deviceInfo": {"model": "x"},
                    "metadata": {},
                },
            },
        ),
        (dm.MANAGE, {"reqId": "a", "d": {"lifetime": 0}}),
        (dm.UNMANAGE, {"reqId": "a"}),
        (dm.LOCATION, {"reqId": "a", "d": {"latitude": -90, "longitude": 180.0}}),
        (
            dm.LOCATION,
            {
                "reqId": "a",
                "d": {
                    "latitude": 1, "longitude": 2, "elevation": 3.5, "accuracy": 1,
                    "measuredDateTime": "2026-01-01T00:00:00Z",
                },
            },
        ),
        (dm.ADD_ERROR_CODE, {"reqId": "a", "d": {"errorCode": 0}}),
        (dm.CLEAR_ERROR_CODES, {"reqId": "a"}),
        (dm.ADD_LOG, {"reqId": "a", "d": {"message": "m", "severity": 2, "data": "AAE="}}),
        (dm.CLEAR_LOG, {"reqId": "a"}),
        (dm.NOTIFY, {"d": {"fields": [{"field": "mgmt.firmware", "value": {"state": 1}}]}}),
        (dm.NOTIFY, {"reqId": "n", "d": {"field": "location", "value": None}}),
    ],
)  # fmt: skip
def test_well_formed_messages(suffix: str, body: dict[str, Any]) -> None:
    assert problems(suffix, body) == []


@pytest.mark.parametrize(
    ("suffix", "body", "expected"),
    [
        (dm.RESPONSE, {"reqId": "a"}, "response without rc"),
        (dm.RESPONSE, {"rc": "200", "reqId": "a"}, "rc must be an integer"),
        (dm.RESPONSE, {"rc": True, "reqId": "a"}, "rc must be an integer"),
        (dm.RESPONSE, {"rc": 200}, "no reqId"),
        (dm.RESPONSE, {"rc": 200, "reqId": 7}, "reqId must be a non-empty string"),
        (dm.RESPONSE, {"rc": 200, "reqId": ""}, "reqId must be a non-empty string"),
        (dm.RESPONSE, {"rc": 200, "reqId": "a", "message": 1}, "message must be a string"),
        (dm.MANAGE, {"d": {}}, "no reqId"),
        (dm.MANAGE, {"reqId": "a", "d": []}, "d must be an object"),
        (dm.MANAGE, {"reqId": "a", "d": {"lifetime": -1}}, "non-negative integer"),
        (dm.MANAGE, {"reqId": "a", "d": {"lifetime": 3600.5}}, "non-negative integer"),
        (dm.MANAGE, {"reqId": "a", "d": {"supports": []}}, "supports must be an object"),
        (dm.MANAGE, {"reqId": "a", "d": {"supports": {"deviceActions": 1}}}, "true or false"),
        (dm.MANAGE, {"reqId": "a", "d": {"deviceInfo": "x"}}, "deviceInfo must be an object"),
        (dm.LOCATION, {"reqId": "a"}, "location update without d"),
        (dm.LOCATION, {"reqId": "a", "d": {"latitude": 1}}, "longitude must be a number"),
        (dm.LOCATION, {"reqId": "a", "d": {"latitude": 91, "longitude": 0}}, "outside -90..90"),
        (dm.LOCATION, {"reqId": "a", "d": {"latitude": True, "longitude": 0}}, "latitude must"),
        (
            dm.LOCATION,
            {"reqId": "a", "d": {"latitude": 0, "longitude": 0, "elevation": "high"}},
            "elevation must be a number",
        ),
        (
            dm.LOCATION,
            {"reqId": "a", "d": {"latitude": 0, "longitude": 0, "measuredDateTime": 5}},
            "ISO 8601",
        ),
        (dm.ADD_ERROR_CODE, {"reqId": "a", "d": {"errorCode": "E1"}}, "errorCode must be"),
        (dm.ADD_ERROR_CODE, {"reqId": "a"}, "errorCode must be"),
        (dm.ADD_LOG, {"reqId": "a", "d": {}}, "d.message must be a string"),
        (dm.ADD_LOG, {"reqId": "a", "d": {"message": "m", "severity": 3}}, "0, 1 or 2"),
        (dm.ADD_LOG, {"reqId": "a", "d": {"message": "m", "timestamp": 1}}, "d.timestamp"),
        (dm.ADD_LOG, {"reqId": "a"}, "log entry without d"),
        (dm.CLEAR_LOG, {}, "no reqId"),
        (dm.NOTIFY, {}, "notify without d"),
        (dm.NOTIFY, {"d": {"fields": []}}, "non-empty list"),
        (dm.NOTIFY, {"d": {"fields": [{"value": 1}]}}, "without a field name"),
        (dm.NOTIFY, {"d": {"fields": [{"field": "x"}]}}, "has no value"),
        (dm.NOTIFY, {"d": {"field": "x"}}, "without d.value"),
        (dm.NOTIFY, {"d": {"other": 1}}, "needs fields"),
    ],
)
def test_malformed_messages(suffix: str, body: dict[str, Any], expected: str) -> None:
    found = problems(suffix, body)
    assert any(expected in detail for detail in found), found


def test_short_lifetime_is_its_own_rule() -> None:
    body = {"reqId": "a", "d": {"lifetime": 600}}
    assert dm.check_body(dm.MANAGE, body) == [
        (dm.RULE_LIFETIME, "lifetime 600 s is below the minimum 3600 s")
    ]
    assert dm.check_body(dm.MANAGE, body, min_lifetime=600) == []


def test_number_helpers() -> None:
    assert dm.is_int(3)
    assert not dm.is_int(True)
    assert not dm.is_int(3.0)
    assert dm.is_number(3.5)
    assert not dm.is_number(float("inf"))
    assert not dm.is_number(False)
    assert not dm.is_number("1")
