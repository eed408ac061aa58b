"""DMAgent: manage, renewal, retries, unmanage across restarts, gateway reboot, location, diag."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from edged.config.management import DeviceManageConfig
from edged.model import DeviceIdentity, DeviceState
from tests.unit.dm.rig import ATTACHED, GW, S1, S2, VERSION, Clock, Rig, settle, wait_for


@pytest.fixture(autouse=True)
async def _state_writer_threads() -> AsyncIterator[None]:
    yield
    await asyncio.get_running_loop().shutdown_default_executor()  # StateFile's writes


async def test_manage_on_connect_for_the_gateway_and_each_managed_device(tmp_path: Path) -> None:
    rig = Rig(
        tmp_path,
        settings={
            "metadata": {"site": "A"},
            "device_info": {"model": "edge-1"},
            "actions": {"reboot": {"run": ["/bin/true"]}},
            "custom": {"sys": {"x": {"run": ["/bin/true"]}}},
        },
        devices={S1: ATTACHED, S2: {"lifetime": 7200}},
    )
    await settle()
    assert rig.sent == []  # nothing before the uplink is up
    rig.agent.connected()
    manages = {s.device: s.body for s in rig.of("mgmt/manage")}
    assert set(manages) == {GW, S1, S2}
    gw = manages[GW]["d"]
    assert gw["lifetime"] == 3600 and gw["metadata"] == {"site": "A"}
    # the gateway's default firmware install: a .deb of edged through the root helper
    assert gw["supports"] == {"deviceActions": True, "firmwareActions": True, "sys": True}
    assert gw["deviceInfo"]["fwVersion"] == VERSION and gw["deviceInfo"]["model"] == "edge-1"
    s1 = manages[S1]["d"]
    assert s1["supports"] == {"deviceActions": True, "firmwareActions": False, "tools": True}
    assert s1["deviceInfo"] == {"serialNumber": "S1-0001", "model": "PX-1"}
    assert s1["metadata"] == {"room": "boiler"}
    s2 = manages[S2]["d"]
    assert s2["lifetime"] == 7200
    assert s2["supports"] == {"deviceActions": False, "firmwareActions": False}
    assert len({body["reqId"] for body in manages.values()}) == 3
    for device, body in manages.items():
        rig.respond(device, body["reqId"])
    devices = rig.agent.snapshot()["devices"]
    assert {devices[str(d)]["status"] for d in (GW, S1, S2)} == {"managed"}
    rig.agent.connected()  # a reconnect manages everything again
    assert len(rig.of("mgmt/manage")) == 6
    await rig.agent.close()


async def test_a_refused_manage_is_retried_with_backoff_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    rig = Rig(tmp_path, clock=clock, devices={})
    with caplog.at_level(logging.WARNING, "edged.dm"):
        rig.agent.connected()
        for _ in range(3):
            sent = rig.of("mgmt/manage")[-1]
            rig.respond(GW, sent.body["reqId"], 409)
            clock.now += 0.5
            rig.agent.tick()
            assert rig.of("mgmt/manage")[-1] is sent  # not yet: backoff of about 1 s or more
            clock.now += 600
            rig.agent.tick()
    assert len(rig.of("mgmt/manage")) == 4
    refusals = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 1 and "409" in refusals[0].getMessage()
    rig.respond(GW, rig.of("mgmt/manage")[-1].body["reqId"], 200)
    snapshot = rig.agent.snapshot()["devices"][str(GW)]
    assert (snapshot["status"], snapshot["refusals"], snapshot["last_rc"]) == ("managed", 3, 200)
    await rig.agent.close()


async def test_a_manage_without_response_is_retried(tmp_path: Path) -> None:
    clock = Clock()
    rig = Rig(tmp_path, clock=clock, devices={})
    rig.agent.connected()
    first = rig.of("mgmt/manage")[0].body["reqId"]
    clock.now += 5  # response_timeout
    rig.agent.tick()
    clock.now += 600
    rig.agent.tick()
    assert len(rig.of("mgmt/manage")) == 2
    rig.respond(GW, first)  # too late: ignored
    assert rig.agent.snapshot()["devices"][str(GW)]["status"] == "managing"
    rig.respond(GW, rig.of("mgmt/manage")[1].body["reqId"])
    assert rig.agent.snapshot()["devices"][str(GW)]["timeouts"] == 1
    await rig.agent.close()


async def test_short_lifetime_accepted_with_a_warning_and_renewed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "edged.dm"):
        rig = Rig(tmp_path, devices={S1: {"lifetime": 0.2}}, auto={"mgmt/manage": 200})
    assert any("0.2 s" in r.getMessage() for r in caplog.records)
    runner = asyncio.create_task(rig.agent.run())
    rig.agent.connected()
    await wait_for(lambda: len(rig.of("mgmt/manage", S1)) >= 4)
    assert rig.of("mgmt/manage", S1)[0].body["d"]["lifetime"] == 0.2
    assert len(rig.of("mgmt/manage", GW)) == 1  # an hour: not renewed yet
    runner.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await runner
    await rig.agent.close()


async def test_a_device_removed_from_the_config_is_unmanaged_at_the_next_start(
    tmp_path: Path,
) -> None:
    first = Rig(tmp_path, devices={S1: ATTACHED, S2: {}})
    first.manage_all()
    await first.agent.close()

    second = Rig(tmp_path, devices={S1: ATTACHED}, settings={"enabled": False})
    second.agent.connected()
    unmanage = {s.device: s.body for s in second.of("mgmt/unmanage")}
    assert set(unmanage) == {S2, GW}  # S2 left the config, the gateway's management is off
    assert all(set(body) == {"reqId"} for body in unmanage.values())
    second.respond(S2, unmanage[S2]["reqId"], 200)
    second.respond(GW, unmanage[GW]["reqId"], 500)  # not done: tried again next time
    await second.agent.close()
    saved = orjson.loads(second.state_path.read_bytes())
    assert saved["managed"] == ["gw/GW1", "sensor/S1"]

    third = Rig(tmp_path, devices={S1: ATTACHED}, settings={"enabled": False})
    third.agent.connected()
    assert [s.device for s in third.of("mgmt/unmanage")] == [GW]
    assert [s.device for s in third.of("mgmt/manage")] == [S1]
    await third.agent.close()


async def test_gateway_reboot_answers_first_and_completes_at_the_next_manage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    count = tmp_path / "reboots"
    reboot = {"run": ["/bin/sh", "-c", f"echo x >> {count}"]}
    rig = Rig(tmp_path, settings={"actions": {"reboot": reboot}}, devices={})
    rig.manage_all()
    rig.deliver(GW, "mgmt/initiate/device/reboot", {"reqId": "boot"})
    await wait_for(count.exists)
    assert rig.answer("boot") == {"rc": 202, "reqId": "boot"}
    saved = orjson.loads(rig.state_path.read_bytes())
    assert saved["pending_action"]["reqId"] == "boot"
    await rig.agent.close()

    with caplog.at_level(logging.INFO, "edged.dm"):
        again = Rig(tmp_path, settings={"actions": {"reboot": reboot}}, devices={})
        again.deliver(GW, "mgmt/initiate/device/reboot", {"reqId": "boot"})  # redelivered
        assert again.answer("boot") == {"rc": 202, "reqId": "boot"}
        again.manage_all()
    assert any("is complete" in r.getMessage() for r in caplog.records)
    assert again.agent.snapshot()["pending_action"] is None
    await again.agent.close()
    assert count.read_text() == "x\n"  # carried out once
    assert orjson.loads(again.state_path.read_bytes())["pending_action"] is None


async def test_a_failing_gateway_reboot_is_logged_and_forgotten(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path, settings={"actions": {"factory_reset": {"run": ["/bin/false"]}}})
    with caplog.at_level(logging.ERROR, "edged.dm"):
        rig.deliver(GW, "mgmt/initiate/device/factory_reset", {"reqId": "f"})
        await wait_for(lambda: rig.agent.snapshot()["requests_running"] == 0)
    assert rig.answer("f") == {"rc": 202, "reqId": "f"}
    assert any("factory_reset failed" in r.getMessage() for r in caplog.records)
    assert rig.agent.snapshot()["pending_action"] is None
    await rig.agent.close()


async def test_configured_location_sent_after_each_manage(tmp_path: Path) -> None:
    where = {"latitude": 10.0, "longitude": 20.0, "accuracy": 5.0}
    rig = Rig(
        tmp_path, settings={"location": where}, devices={}, auto={"device/update/location": 200}
    )
    rig.agent.connected()
    assert rig.of("device/update/location") == []  # manage comes first
    rig.respond(GW, rig.of("mgmt/manage")[0].body["reqId"])
    sent = rig.of("device/update/location", GW)
    assert len(sent) == 1 and sent[0].body["d"] == where
    await rig.agent.close()


async def test_diagnostics_for_a_managed_device(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rig = Rig(tmp_path, settings={"diag_min_interval": 0}, auto={"add/diag/errorCodes": 400})
    rig.agent.device_state_changed(S1, DeviceState.DOWN, "adapter crashed")
    rig.agent.tick()
    assert [s.suffix for s in rig.sent if "diag" in s.suffix] == []  # not managed yet
    rig.manage_all()
    with caplog.at_level(logging.WARNING, "edged.dm"):
        rig.agent.device_state_changed(S1, DeviceState.DOWN, "adapter crashed")
        rig.agent.tick()
        await settle()
        rig.agent.device_state_changed(S1, DeviceState.ONLINE, "")
        rig.agent.tick()
        rig.agent.device_state_changed(S1, DeviceState.OFFLINE, "")
        rig.agent.tick()
        await settle()
    suffixes = [s.suffix for s in rig.sent if "diag" in s.suffix]
    assert "add/diag/errorCodes" in suffixes and "clear/diag/errorCodes" in suffixes
    assert len([r for r in caplog.records if "errorCodes" in r.getMessage()]) == 1
    await rig.agent.close()


async def test_responses_with_unknown_req_ids_are_ignored(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.respond(S1, "never-sent", 200)
    rig.deliver(S1, "response", b"garbage")
    assert rig.sent == []
    assert rig.agent.snapshot()["counters"]["responses_unmatched"] == 1
    await rig.agent.close()


async def test_snapshot_is_small_and_json(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.manage_all()
    snapshot = rig.agent.snapshot()
    assert set(snapshot) == {
        "devices", "requests_running", "awaiting_responses", "pending_action", "counters"
    }  # fmt: skip
    assert snapshot["devices"][str(S1)]["expires_at"] is not None
    assert len(orjson.dumps(snapshot)) < 4096
    await rig.agent.close()


async def test_changes_before_the_manage_are_notified_after_it(tmp_path: Path) -> None:
    first = Rig(tmp_path, devices={S2: {"metadata": {"v": 1}}})
    first.manage_all()
    first.deliver(S2, "observe", {"reqId": "o", "d": {"fields": ["metadata.v"]}})
    assert first.answer("o")["d"] == {"fields": [{"field": "metadata.v", "value": 1}]}
    await first.agent.close()

    second = Rig(tmp_path, devices={S2: {"metadata": {"v": 2}}})  # config edited meanwhile
    second.agent.connected()
    assert second.of("notify") == []  # manage first
    second.respond(S2, second.of("mgmt/manage", S2)[0].body["reqId"])
    notify = second.of("notify", S2)
    assert [n.body["d"] for n in notify] == [{"fields": [{"field": "metadata.v", "value": 2}]}]
    await second.agent.close()


async def test_reconfigure_manages_new_devices_and_unmanages_removed_ones(tmp_path: Path) -> None:
    rig = Rig(tmp_path, devices={S1: {}, S2: {}})
    rig.manage_all()
    rig.sent.clear()
    s3 = DeviceIdentity("sensor", "S3")
    rig.agent.reconfigure(
        {S1: DeviceManageConfig(), s3: DeviceManageConfig.model_validate({"lifetime": 7200})}
    )
    [unmanage] = rig.of("mgmt/unmanage")
    assert unmanage.device == S2  # at once, not at the next connect
    rig.agent.tick()
    manages = rig.of("mgmt/manage")
    assert [m.device for m in manages] == [s3] and manages[0].body["d"]["lifetime"] == 7200
    rig.respond(S2, unmanage.body["reqId"])
    rig.respond(s3, manages[0].body["reqId"])
    assert S2 not in rig.agent.lifecycle.leaving
    assert set(rig.agent.targets) == {GW, S1, s3}
    await rig.agent.close()
