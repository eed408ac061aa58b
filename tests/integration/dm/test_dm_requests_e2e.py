"""Device management end to end: actions and every error answer (the daemon as a process).

Reboot, factory reset and custom actions for the gateway (local ``run:`` programs) and for an
attached simulated device (its adapter's commands), then the bad requests of issue 11: each gets
its protocol answer, or is a logged drop when there is no reqId to answer, and nothing acts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from edged.emulator import PlatformEmulator
from edged.model import DeviceIdentity
from tests.integration.dm.helpers import (
    FACTORY_RESET,
    FAN,
    GW,
    PUMP,
    REBOOT,
    dm_config,
    script,
    sim,
    wait_managed,
)
from tests.support.broker import Broker
from tests.support.daemon import running_daemon

pytestmark = pytest.mark.integration


def test_reboot_and_factory_reset_of_the_gateway_and_of_an_attached_device(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    marker = tmp_path / "rebooted"
    managed = {"actions": {"reboot": {"run": [script(tmp_path / "reboot.sh", f": > {marker}")]}}}
    pump = {
        "actions": {
            "reboot": {"command": "set", "data": {"rebooted": "yes"}},
            "factory_reset": {"run": ["/bin/false"]},
        }
    }
    config = dm_config(tmp_path, broker, managed, [sim(PUMP, pump)])
    with running_daemon(config) as daemon:
        wait_managed(emulator, GW, PUMP)
        assert emulator.dm_request(GW, REBOOT)["rc"] == 202
        emulator.wait_for(marker.exists, 5, "the gateway's reboot action ran")
        not_configured = emulator.dm_request(GW, FACTORY_RESET)
        assert not_configured["rc"] == 501 and "not configured" in not_configured["message"]
        assert emulator.dm_request(PUMP, REBOOT)["rc"] == 202
        # 202 came after the adapter took the command: its readings now carry the value.
        emulator.wait_for_events(device=PUMP, predicate=lambda e: e.values.get("rebooted") == "yes")
        failed = emulator.dm_request(PUMP, FACTORY_RESET)
        assert failed["rc"] == 500 and "/bin/false failed (exit code 1)" in failed["message"]
        daemon.wait_for_output("WARNING .*the platform asked for a reboot of the gateway")
    record = emulator.device(GW)
    assert record is not None and record.dm.supports["deviceActions"] is True
    assert emulator.violations == []


def test_custom_actions_pass_parameters_and_check_them(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    dump = tmp_path / "env"
    body = f"env | grep '^EDGED_' | sort > {dump}.tmp && mv {dump}.tmp {dump}"
    collect = {
        "run": [script(tmp_path / "collect.sh", body)],
        "parameters": [
            {"name": "target", "required": True},
            {"name": "log.level", "default": "info", "pattern": "debug|info"},
        ],
    }
    speed = {
        "command": "set",
        "data": {"mode": "manual"},
        "parameters": [{"name": "speed", "required": True}],
    }
    config = dm_config(
        tmp_path,
        broker,
        {"custom": {"tools": {"collect": collect}}},
        [sim(PUMP, {"custom": {"pumpctl": {"speed": speed}}})],
    )
    with running_daemon(config):
        wait_managed(emulator, GW, PUMP)
        fields = [
            {"field": "target", "value": "/var/log"},
            {"field": "log.level", "value": "debug"},
        ]
        done = emulator.dm_request(GW, "mgmt/custom/tools/collect", {"fields": fields})
        assert done["rc"] == 200
        assert dump.read_text().splitlines() == [
            "EDGED_DEVICE_ID=gw-0001",
            "EDGED_DEVICE_TYPE=test-gw",
            "EDGED_GATEWAY_ID=gw-0001",
            "EDGED_GATEWAY_TYPE=test-gw",
            "EDGED_PARAM_LOG_LEVEL=debug",
            "EDGED_PARAM_TARGET=/var/log",
        ]
        dump.unlink()
        missing = emulator.dm_request(GW, "mgmt/custom/tools/collect", {"fields": fields[1:]})
        assert missing["rc"] == 400 and "target" in missing["message"]
        bad = [fields[0], {"field": "log.level", "value": "trace"}]
        assert emulator.dm_request(GW, "mgmt/custom/tools/collect", {"fields": bad})["rc"] == 400
        unmapped = emulator.dm_request(GW, "mgmt/custom/tools/format-disk")
        assert unmapped["rc"] == 501
        assert emulator.dm_request(GW, "mgmt/custom/other/collect")["rc"] == 501
        # The attached device's action is its adapter's command, parameters merged into data.
        speed_fields = {"fields": [{"field": "speed", "value": 1450}]}
        assert emulator.dm_request(PUMP, "mgmt/custom/pumpctl/speed", speed_fields)["rc"] == 200
        emulator.wait_for_events(
            device=PUMP,
            predicate=lambda e: (
                e.values.get("speed") == "1450" and e.values.get("mode") == "manual"
            ),
        )
        assert emulator.dm_request(PUMP, "mgmt/custom/pumpctl/speed")["rc"] == 400
        assert emulator.dm_request(PUMP, "mgmt/custom/tools/collect")["rc"] == 501
    assert not dump.exists()  # none of the refused requests ran the program
    assert emulator.violations == []


def _rc(emulator: PlatformEmulator, device: DeviceIdentity, suffix: str, d: Any = None) -> int:
    answer = emulator.dm_request(device, suffix, d)
    assert isinstance(answer.get("message"), str), answer  # every refusal says why
    rc = answer["rc"]
    assert isinstance(rc, int)
    return rc


def test_bad_requests_get_their_protocol_answer_and_nothing_acts(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    marker = tmp_path / "acted"
    touch = {"run": [script(tmp_path / "touch.sh", f": > {marker}")]}
    config = dm_config(
        tmp_path,
        broker,
        {"actions": {"reboot": touch}, "custom": {"tools": {"touch": touch}}},
        [sim(PUMP, {"actions": {"reboot": touch}}), sim(FAN)],
    )
    with running_daemon(config) as daemon:
        wait_managed(emulator, GW, PUMP)
        # No readable reqId: nobody to answer; a logged drop, and the next request is served.
        for raw in (b"{not json", b'["reqId", "x"]', b'{"reqId": 42}', b"\xff\xfe"):
            emulator.dm_publish(GW, "observe", raw)
        emulator.dm_publish(PUMP, "mgmt/initiate/device/reboot", {"d": {}})
        ok = emulator.dm_request(GW, "observe", {"fields": ["metadata"]})
        assert ok["rc"] == 200
        daemon.wait_for_output("ignored a DM message for test-gw/gw-0001 on observe")
        for device in (GW, PUMP):
            location = {"field": "location", "value": {"latitude": "north", "longitude": 1}}
            assert _rc(emulator, device, "device/update", {"fields": [location]}) == 400
            assert _rc(emulator, device, "device/update", {"fields": "location"}) == 400
            assert _rc(emulator, device, "observe", {"fields": [{"field": 7}]}) == 400
            assert _rc(emulator, device, "cancel", {}) == 400
            assert _rc(emulator, device, "mgmt/initiate/device/shutdown") == 404
        assert _rc(emulator, GW, "mgmt/custom/tools/touch", {"fields": [{"a": 1}]}) == 400
        params = {"fields": [{"field": "p", "value": {"nested": True}}]}
        assert _rc(emulator, GW, "mgmt/custom/tools/touch", params) == 400
        assert _rc(emulator, GW, "mgmt/custom/tools/touch", "not an object") == 400
        huge = {"fields": [{"field": "metadata", "value": {"blob": "x" * 200_000}}]}
        assert _rc(emulator, GW, "device/update", huge) == 400
        assert _rc(emulator, FAN, REBOOT) == 404  # attached, but not managed
        assert _rc(emulator, FAN, "observe", {"fields": ["metadata"]}) == 404
        assert _rc(emulator, DeviceIdentity("ghost", "g-1"), REBOOT) == 404  # never configured
        assert daemon.process.poll() is None
    assert not marker.exists()
    issued = [
        m.req_id or ""
        for m in emulator.dm_messages
        if m.direction == "down" and m.suffix != "response" and m.req_id
    ]
    answered = [
        m.req_id or ""
        for m in emulator.dm_messages
        if m.direction == "up" and m.suffix == "response"
    ]
    assert sorted(answered) == sorted(issued)  # one answer each, none for the drops
    assert emulator.violations == []


def test_firmware_actions_need_an_install_action(
    tmp_path: Path, broker: Broker, emulator: PlatformEmulator
) -> None:
    """An attached device without firmware.install answers 501 and does not advertise
    firmwareActions; the gateway (default: install a .deb of edged) advertises them and refuses
    a download without a uri or an update before a download with 400 (docs/firmware.md)."""
    config = dm_config(tmp_path, broker, devices=[sim(PUMP, {})])
    with running_daemon(config):
        wait_managed(emulator, GW, PUMP)
        for step in ("download", "update"):
            assert _rc(emulator, PUMP, f"mgmt/initiate/firmware/{step}") == 501
            assert _rc(emulator, GW, f"mgmt/initiate/firmware/{step}") == 400
    pump, gateway = emulator.device(PUMP), emulator.device(GW)
    assert pump is not None and pump.dm.supports["firmwareActions"] is False
    assert gateway is not None and gateway.dm.supports["firmwareActions"] is True
