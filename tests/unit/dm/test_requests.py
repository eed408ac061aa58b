"""Parsing platform DM requests: every shape PROTOCOL.md 4.8-4.12 allows, every bad one refused."""

from __future__ import annotations

import orjson
import pytest

from edged.dm import codes
from edged.dm import requests as rq


def body(value: object) -> bytes:
    return orjson.dumps(value)


def test_update_with_and_without_req_id() -> None:
    loc = {"latitude": 1.5, "longitude": 2, "elevation": 3}
    parsed = rq.parse(
        "device/update", body({"d": {"fields": [{"field": "location", "value": loc}]}})
    )
    assert parsed == rq.Update(None, (("location", loc),))
    parsed = rq.parse(
        "device/update",
        body({"reqId": "r1", "d": {"fields": [{"field": "metadata", "value": {"a": 1}}]}}),
    )
    assert parsed == rq.Update("r1", (("metadata", {"a": 1}),))


def test_update_keeps_unknown_fields_for_the_404() -> None:
    parsed = rq.parse(
        "device/update", body({"reqId": "r", "d": {"fields": [{"field": "x", "value": 1}]}})
    )
    assert parsed == rq.Update("r", (("x", 1),))


@pytest.mark.parametrize(
    "d",
    [
        None,
        {},
        {"fields": []},
        {"fields": "location"},
        {"fields": [{"field": "location"}]},  # no value
        {"fields": [{"field": 3, "value": 1}]},
        {"fields": [{"field": "location", "value": {"latitude": "1", "longitude": 2}}]},
        {"fields": [{"field": "location", "value": {"latitude": 91, "longitude": 2}}]},
        {
            "fields": [
                {"field": "location", "value": {"latitude": 1, "longitude": 2, "accuracy": "x"}}
            ]
        },
        {"fields": [{"field": "location", "value": {"latitude": True, "longitude": 2}}]},
        {"fields": [{"field": "metadata", "value": [1]}]},
        {"fields": [{"field": "deviceInfo", "value": {"model": 5}}]},
        {"fields": [{"field": "x", "value": 1}] * 65},
    ],
)
def test_bad_updates_are_400(d: object) -> None:
    payload = {"reqId": "r"} if d is None else {"reqId": "r", "d": d}
    parsed = rq.parse("device/update", body(payload))
    assert isinstance(parsed, rq.Problem)
    assert (parsed.rc, parsed.req_id) == (codes.BAD_REQUEST, "r")


@pytest.mark.parametrize(
    "d",
    [
        {"fields": [{"field": "mgmt.firmware"}, {"field": "location"}]},  # 2018
        {"fields": ["mgmt.firmware", "location"]},  # 2016
        {"fields": ["mgmt.firmware", {"field": "location"}, "location"]},  # mixed, repeated
    ],
)
def test_observe_both_forms(d: object) -> None:
    parsed = rq.parse("observe", body({"reqId": "o", "d": d}))
    assert parsed == rq.Observe("o", ("mgmt.firmware", "location"))


@pytest.mark.parametrize(
    "d",
    [
        {"fields": [{"field": "mgmt.firmware"}]},
        {"fields": ["mgmt.firmware"]},
        {"data": [{"field": "mgmt.firmware"}]},  # 2016 and iot-java
        {"data": ["mgmt.firmware"]},
    ],
)
def test_cancel_all_forms(d: object) -> None:
    assert rq.parse("cancel", body({"reqId": "c", "d": d})) == rq.Cancel("c", ("mgmt.firmware",))


def test_device_actions_and_custom() -> None:
    reboot = rq.parse("mgmt/initiate/device/reboot", body({"reqId": "a"}))
    assert reboot == rq.DeviceAction("a", rq.Action.REBOOT)
    reset = rq.parse("mgmt/initiate/device/factory_reset", body({"reqId": "b", "d": {}}))
    assert reset == rq.DeviceAction("b", rq.Action.FACTORY_RESET)
    custom = rq.parse(
        "mgmt/custom/bundle.x/act-1",
        body({"reqId": "c", "d": {"fields": [
            {"field": "p", "value": "v"}, {"field": "n", "value": 3}, {"field": "b", "value": True}
        ]}}),
    )  # fmt: skip
    assert custom == rq.Custom("c", "bundle.x", "act-1", {"p": "v", "n": "3", "b": "true"})
    assert rq.parse("mgmt/custom/b/a", body({"reqId": "d"})) == rq.Custom("d", "b", "a", {})


@pytest.mark.parametrize(
    ("suffix", "payload", "rc"),
    [
        ("mgmt/custom/b/a", {"reqId": "r", "d": {"fields": [{"field": "p", "value": [1]}]}}, 400),
        ("mgmt/custom/b/a", {"reqId": "r", "d": {"fields": [{"field": "p", "value": None}]}}, 400),
        (
            "mgmt/custom/b/a",
            {"reqId": "r", "d": {"fields": [{"field": "p", "value": "1"}] * 2}},
            400,
        ),
        ("mgmt/custom/b/a", {"reqId": "r", "d": {"fields": ["p"]}}, 400),
        ("mgmt/custom/b", {"reqId": "r"}, 404),
        ("mgmt/custom/b/a/c", {"reqId": "r"}, 404),
        ("mgmt/initiate/device/reboot/now", {"reqId": "r"}, 404),
        ("mgmt/initiate/device/explode", {"reqId": "r"}, 404),
        ("something/else", {"reqId": "r"}, 404),
        ("observe", {"reqId": "r"}, 400),
        ("observe", {"reqId": "r", "d": {"fields": [{"no": "field"}]}}, 400),
        ("observe", {"reqId": "r", "d": {"fields": ["x" * 256]}}, 400),
        ("cancel", {"reqId": "r", "d": {"data": []}}, 400),
        ("observe", {"reqId": "r", "d": []}, 400),
    ],
)
def test_problems_with_a_req_id_are_answered(suffix: str, payload: object, rc: int) -> None:
    parsed = rq.parse(suffix, body(payload))
    assert isinstance(parsed, rq.Problem)
    assert (parsed.rc, parsed.req_id) == (rc, "r")
    assert parsed.message


@pytest.mark.parametrize(
    ("suffix", "payload"),
    [
        ("observe", b""),
        ("observe", b"{"),
        ("observe", b'{"reqId": "r", "d": '),  # truncated
        ("observe", b"\xff\xfe"),
        ("observe", b"[1, 2]"),
        ("observe", b'"text"'),
        ("observe", body({"reqId": 5, "d": {"fields": ["a"]}})),
        ("observe", body({"reqId": "", "d": {"fields": ["a"]}})),
        ("observe", body({"reqId": "x" * 257, "d": {"fields": ["a"]}})),
        ("mgmt/initiate/device/reboot", body({})),  # an action needs a reqId to answer
        ("mgmt/custom/b/a", body({"d": {}})),
        ("response", body({"rc": 200})),
        ("response", body({"reqId": "r", "rc": "200"})),
        ("response", body({"reqId": "r", "rc": True})),
        ("observe", b" " * (rq.MAX_DECODED_BODY + 1)),
    ],
)
def test_problems_without_a_req_id_are_drops(suffix: str, payload: bytes) -> None:
    parsed = rq.parse(suffix, payload)
    assert isinstance(parsed, rq.Problem)
    assert parsed.req_id is None


def test_a_huge_body_with_a_req_id_is_400() -> None:
    payload = body({"reqId": "big", "d": {"fields": ["a"]}, "pad": "x" * rq.MAX_BODY})
    parsed = rq.parse("observe", payload)
    assert isinstance(parsed, rq.Problem)
    assert (parsed.rc, parsed.req_id) == (400, "big")


def test_req_id_of_256_characters_is_fine() -> None:
    parsed = rq.parse("mgmt/initiate/device/reboot", body({"reqId": "r" * 256}))
    assert parsed == rq.DeviceAction("r" * 256, rq.Action.REBOOT)


def test_platform_response() -> None:
    parsed = rq.parse("response", body({"reqId": "m", "rc": 403, "message": "no"}))
    assert parsed == rq.PlatformResponse("m", 403, "no")
    assert rq.parse("response", body({"reqId": "m", "rc": 200, "message": 5})) == (
        rq.PlatformResponse("m", 200, None)
    )
