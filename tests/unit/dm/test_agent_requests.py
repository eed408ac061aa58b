"""DMAgent: every platform request for the gateway and an attached device, and every error path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from edged.adapters.base import Location, LocationBoard
from edged.model import DeviceIdentity
from tests.unit.dm.rig import GW, S1, STRANGER, Rig, settle, wait_for

LOC = {"latitude": 48.1, "longitude": 11.5, "elevation": 500.0}


def update(req_id: str | None, *fields: tuple[str, object]) -> dict[str, object]:
    body: dict[str, object] = {"d": {"fields": [{"field": f, "value": v} for f, v in fields]}}
    if req_id is not None:
        body["reqId"] = req_id
    return body


@pytest.fixture(autouse=True)
async def _state_writer_threads() -> AsyncIterator[None]:
    yield
    await asyncio.get_running_loop().shutdown_default_executor()  # StateFile's writes


async def test_one_wildcard_subscription(tmp_path: Path) -> None:
    assert Rig(tmp_path).agent.subscriptions() == [("iotdm-1/type/+/id/+/#", 1)]


@pytest.mark.parametrize("device", [GW, S1])
async def test_update_answered_204_and_persisted_across_a_restart(
    tmp_path: Path, device: DeviceIdentity
) -> None:
    rig = Rig(tmp_path)
    rig.manage_all()
    rig.deliver(device, "device/update", update("u1", ("metadata", {"a": 1}), ("location", LOC)))
    assert rig.answer("u1") == {"rc": 204, "reqId": "u1"}
    rig.deliver(device, "device/update", update(None, ("deviceInfo", {"model": "X"})))
    await rig.agent.close()
    assert all(s.body.get("reqId") != None for s in rig.of("response"))  # noqa: E711

    again = Rig(tmp_path)
    again.manage_all()
    again.deliver(device, "observe", {"reqId": "o", "d": {"fields": ["metadata", "location"]}})
    assert again.answer("o")["d"]["fields"] == [
        {"field": "metadata", "value": {"a": 1}},
        {"field": "location", "value": LOC},
    ]
    manage = again.of("mgmt/manage", device)[0].body["d"]
    assert manage["metadata"] == {
        "a": 1
    }  # the platform's edit stands while the config is as it was
    assert manage["deviceInfo"] == {"model": "X"}
    await again.agent.close()


async def test_update_of_unknown_fields_is_404_listing_them_and_applies_nothing(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    update_body = update("u", ("metadata", {"a": 1}), ("colour", "red"), ("mgmt", {}))
    rig.deliver(S1, "device/update", update_body)
    answer = rig.answer("u")
    assert (answer["rc"], answer["d"]) == (404, {"fields": ["colour", "mgmt"]})
    rig.deliver(S1, "observe", {"reqId": "o", "d": {"fields": [{"field": "metadata"}]}})
    assert rig.answer("o")["d"]["fields"] == [{"field": "metadata", "value": {"room": "boiler"}}]
    await rig.agent.close()


async def test_observe_both_forms_notify_on_change_cancel_both_forms(tmp_path: Path) -> None:
    board = LocationBoard()
    rig = Rig(tmp_path, location=board, settings={"location_min_interval": 0})
    rig.manage_all()
    board.publish(Location(1.0, 2.0))  # managed: sent as a location update
    assert len(rig.of("device/update/location", GW)) == 1
    rig.deliver(GW, "observe", {"reqId": "o1", "d": {"fields": [{"field": "location"}]}})
    rig.deliver(GW, "observe", {"reqId": "o2", "d": {"fields": ["mgmt.firmware"]}})
    assert rig.answer("o1")["rc"] == 200
    assert rig.answer("o1")["d"]["fields"][0]["value"]["latitude"] == 1.0
    assert rig.answer("o2")["d"] == {
        "fields": [{"field": "mgmt.firmware", "value": {"state": 0, "updateStatus": 0}}]
    }
    board.publish(Location(1.5, 2.0))  # about 55 km away
    notify = rig.of("notify", GW)
    assert len(notify) == 1
    assert notify[0].body["d"]["fields"][0]["field"] == "location"
    assert notify[0].body["d"]["fields"][0]["value"]["latitude"] == 1.5
    rig.deliver(GW, "cancel", {"reqId": "c1", "d": {"data": [{"field": "location"}]}})
    rig.deliver(GW, "cancel", {"reqId": "c2", "d": {"fields": ["mgmt.firmware"]}})
    assert rig.answer("c1") == {"rc": 200, "reqId": "c1"}
    assert rig.answer("c2") == {"rc": 200, "reqId": "c2"}
    board.publish(Location(3.0, 2.0))
    assert len(rig.of("notify", GW)) == 1  # no longer observed
    rig.deliver(GW, "observe", {"reqId": "o3", "d": {"fields": ["nothing.here"]}})
    assert (rig.answer("o3")["rc"], rig.answer("o3")["d"]) == (404, {"fields": ["nothing.here"]})
    await rig.agent.close()


async def test_notify_refused_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    board = LocationBoard()
    rig = Rig(tmp_path, location=board, settings={"location_min_interval": 0})
    rig.manage_all()
    board.publish(Location(9.0, 2.0))
    rig.deliver(GW, "observe", {"reqId": "o", "d": {"fields": ["location"]}})
    assert rig.answer("o")["rc"] == 200
    rig.auto["notify"] = 404
    with caplog.at_level(logging.WARNING, "edged.dm"):
        for step in range(3):
            board.publish(Location(10.0 + step, 2.0))
            await settle()
    assert len(rig.of("notify")) == 3
    assert len([r for r in caplog.records if "notify" in r.getMessage()]) == 1
    await rig.agent.close()


async def test_reboot_of_an_attached_device_runs_its_adapter_command_then_202(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.deliver(S1, "mgmt/initiate/device/reboot", {"reqId": "r"})
    await wait_for(lambda: bool(rig.answers("r")))
    assert rig.answer("r") == {"rc": 202, "reqId": "r"}
    assert [(c.name, c.data) for c in rig.commands] == [("coil_reboot", {"coil": 7})]
    await rig.agent.close()


async def test_reboot_failing_is_500_and_unconfigured_is_501(tmp_path: Path) -> None:
    devices = {
        S1: {"actions": {"reboot": {"command": "fail"}}},
        STRANGER: {},
    }
    rig = Rig(tmp_path, devices=devices)
    rig.deliver(S1, "mgmt/initiate/device/reboot", {"reqId": "a"})
    rig.deliver(S1, "mgmt/initiate/device/factory_reset", {"reqId": "b"})
    rig.deliver(STRANGER, "mgmt/initiate/device/reboot", {"reqId": "c"})
    rig.deliver(GW, "mgmt/initiate/device/reboot", {"reqId": "d"})
    await wait_for(lambda: all(rig.answers(r) for r in "abcd"))
    assert rig.answer("a")["rc"] == 500 and "did not answer" in rig.answer("a")["message"]
    assert rig.answer("b")["rc"] == 501
    assert rig.answer("c")["rc"] == 501
    assert rig.answer("d")["rc"] == 501  # the gateway has no reboot configured here
    await rig.agent.close()


async def test_custom_actions(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    custom = "mgmt/custom/tools"
    rig.deliver(
        S1, f"{custom}/echo", {"reqId": "ok", "d": {"fields": [{"field": "text", "value": "hi"}]}}
    )
    rig.deliver(S1, f"{custom}/echo", {"reqId": "missing"})
    rig.deliver(S1, f"{custom}/fail", {"reqId": "fails"})
    rig.deliver(S1, f"{custom}/nothing", {"reqId": "unmapped"})
    rig.deliver(S1, "mgmt/custom/other/echo", {"reqId": "bundle"})
    rig.deliver(GW, f"{custom}/echo", {"reqId": "gw"})
    names = ["ok", "missing", "fails", "unmapped", "bundle", "gw"]
    await wait_for(lambda: all(rig.answers(r) for r in names))
    rcs = {r: rig.answer(r)["rc"] for r in names}
    assert rcs == {
        "ok": 200,
        "missing": 400,
        "fails": 500,
        "unmapped": 501,
        "bundle": 501,
        "gw": 501,
    }
    assert [(c.name, c.data) for c in rig.commands] == [("echo", {"text": "hi"}), ("fail", {})]
    await rig.agent.close()


async def test_gateway_custom_action_runs_locally(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    rig = Rig(
        tmp_path,
        settings={"custom": {"sys": {"touch": {"run": ["/usr/bin/touch", str(marker)]}}}},
    )
    rig.deliver(GW, "mgmt/custom/sys/touch", {"reqId": "t"})
    await wait_for(lambda: bool(rig.answers("t")))
    assert rig.answer("t") == {"rc": 200, "reqId": "t"}
    assert marker.exists()
    await rig.agent.close()


async def test_firmware_actions_without_an_install_action_are_501(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    for step in ("download", "update"):
        rig.deliver(S1, f"mgmt/initiate/firmware/{step}", {"reqId": step})
        answer = rig.answer(step)
        assert answer["rc"] == 501 and "no firmware.install" in answer["message"]
    await rig.agent.close()


async def test_devices_not_managed_are_404(tmp_path: Path) -> None:
    rig = Rig(tmp_path, settings={"enabled": False})
    rig.deliver(STRANGER, "mgmt/initiate/device/reboot", {"reqId": "a"})
    rig.deliver(GW, "observe", {"reqId": "b", "d": {"fields": ["location"]}})
    rig.deliver(STRANGER, "device/update", update("c", ("metadata", {})))
    for req_id in "abc":
        assert rig.answer(req_id)["rc"] == 404
    assert "not a managed device" in rig.answer("a")["message"]
    await settle()
    assert rig.commands == []
    await rig.agent.close()


async def test_unknown_suffix_is_404_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path)
    with caplog.at_level(logging.WARNING, "edged.dm"):
        for n in range(3):
            rig.deliver(S1, "mgmt/whatever", {"reqId": f"w{n}"})
    for n in range(3):
        answer = rig.answer(f"w{n}")
        assert answer["rc"] == 404 and "unknown request" in answer["message"]
    assert len([r for r in caplog.records if "mgmt/whatever" in r.getMessage()]) == 1
    await rig.agent.close()


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"not json",
        b'{"reqId": "r", "d": {"fields": [',  # truncated
        b"\x00\xff" * 100,
        b"[]",
        orjson.dumps({"reqId": 7}),
        orjson.dumps({"reqId": "x" * 300}),
        orjson.dumps({}),  # a reboot without reqId: nobody to answer, nothing done
        b" " * 2_000_000,
    ],
)
async def test_bodies_that_cannot_be_answered_are_logged_drops(
    tmp_path: Path, payload: bytes
) -> None:
    rig = Rig(tmp_path)
    rig.deliver(S1, "mgmt/initiate/device/reboot", payload)
    await settle()
    assert rig.of("response") == [] and rig.commands == []
    assert rig.agent.snapshot()["counters"]["dropped"] == 1
    await rig.agent.close()


async def test_bad_bodies_with_a_req_id_are_400_and_nothing_runs(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.deliver(S1, "mgmt/custom/tools/echo", {"reqId": "a", "d": []})
    rig.deliver(S1, "mgmt/custom/tools/echo", {"reqId": "b", "d": {"fields": [{"field": 1}]}})
    rig.deliver(S1, "observe", {"reqId": "c", "d": {"fields": []}})
    big = {"reqId": "d", "d": {"fields": [{"field": "text", "value": "x" * 200_000}]}}
    rig.deliver(S1, "mgmt/custom/tools/echo", big)
    rig.deliver(S1, "device/update", update("e", ("location", {"latitude": "north"})))
    await settle()
    for req_id in "abcde":
        assert rig.answer(req_id)["rc"] == 400
    assert rig.commands == []
    await rig.agent.close()


async def test_a_repeated_req_id_gets_the_same_answer_and_runs_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    echo = {"reqId": "e", "d": {"fields": [{"field": "text", "value": "hi"}]}}
    rig.deliver(S1, "mgmt/custom/tools/echo", echo)
    await wait_for(lambda: bool(rig.answers("e")))
    rig.deliver(S1, "mgmt/custom/tools/echo", echo)
    assert rig.answers("e") == [{"rc": 200, "reqId": "e"}] * 2
    assert len(rig.commands) == 1
    rig.deliver(S1, "mgmt/custom/tools/slow", {"reqId": "s"})
    await settle()
    rig.deliver(S1, "mgmt/custom/tools/slow", {"reqId": "s"})  # while the first runs
    await settle()
    assert rig.answers("s") == []
    rig.release.set()
    await wait_for(lambda: bool(rig.answers("s")))
    await settle()
    assert rig.answers("s") == [{"rc": 200, "reqId": "s"}]
    assert [c.name for c in rig.commands] == ["echo", "slow"]
    await rig.agent.close()


async def test_an_action_outlasting_the_request_timeout_is_answered_500_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path, settings={"request_timeout": 0.1})
    rig.deliver(S1, "mgmt/custom/tools/slow", {"reqId": "s"})
    await wait_for(lambda: bool(rig.answers("s")))
    assert rig.answer("s")["rc"] == 500 and "timed out" in rig.answer("s")["message"]
    with caplog.at_level(logging.INFO, "edged.dm"):
        rig.release.set()
        await wait_for(lambda: rig.agent.snapshot()["requests_running"] == 0)
    assert len(rig.answers("s")) == 1
    assert any("ended late" in r.getMessage() for r in caplog.records)
    await rig.agent.close()


async def test_too_many_requests_is_409_and_a_retry_may_run(tmp_path: Path) -> None:
    rig = Rig(tmp_path, settings={"max_requests": 2})
    for req_id in "abc":
        rig.deliver(S1, "mgmt/custom/tools/slow", {"reqId": req_id})
    await settle()
    assert rig.answer("c")["rc"] == 409
    rig.release.set()
    await wait_for(lambda: rig.agent.snapshot()["requests_running"] == 0)
    rig.deliver(S1, "mgmt/custom/tools/slow", {"reqId": "c"})  # the platform retries
    await wait_for(lambda: len(rig.answers("c")) == 2)
    assert [a["rc"] for a in rig.answers("c")] == [409, 200]
    await rig.agent.close()


async def test_a_flood_is_bounded_and_each_request_answered_once(tmp_path: Path) -> None:
    rig = Rig(tmp_path, settings={"max_requests": 64})
    for n in range(10_000):
        rig.deliver(S1, "mgmt/custom/tools/slow", {"reqId": f"f{n}"})
    snapshot = rig.agent.snapshot()
    assert snapshot["requests_running"] == 64
    assert snapshot["counters"]["busy"] == 10_000 - 64
    rig.release.set()
    await wait_for(lambda: rig.agent.snapshot()["requests_running"] == 0, seconds=20)
    responses = rig.of("response")
    assert len(responses) == 10_000
    assert len({s.body["reqId"] for s in responses}) == 10_000
    assert sum(s.body["rc"] == 200 for s in responses) == 64
    assert len(rig.agent.out.answers) <= 4096
    await rig.agent.close()


async def test_close_answers_running_requests_shutting_down(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.deliver(S1, "mgmt/custom/tools/slow", {"reqId": "a"})
    rig.deliver(S1, "mgmt/initiate/device/reboot", {"reqId": "b"})
    await settle(2)
    await rig.agent.close()
    assert rig.answer("a") == {"rc": 500, "reqId": "a", "message": "shutting down"}
    assert len(rig.answers("b")) == 1
    assert rig.agent.snapshot()["requests_running"] == 0


async def test_handle_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path)

    def broken(*_: object) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(rig.agent, "_dispatch", broken)
    rig.deliver(S1, "observe", {"reqId": "o", "d": {"fields": ["location"]}})
    assert rig.agent.snapshot()["counters"]["internal_errors"] == 1
    await asyncio.sleep(0)
    await rig.agent.close()
