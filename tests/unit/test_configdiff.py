"""The reload's config diff: which devices and adapters changed, what applies live, what waits."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from edged.config import Config, load_config_text
from edged.configdiff import diff_configs, effective_config
from edged.model import DeviceIdentity

BASE: dict[str, Any] = {
    "platform": {
        "org": "abc123",
        "gateway": {"type": "gw", "id": "gw-1"},
        "token_env": "EDGED_TEST_TOKEN",
    },
    "devices": [
        {
            "id": "s1",
            "type": "sim",
            "adapter": "simulated",
            "simulated": {"interval": 1, "values": {"t": {"kind": "sine"}}},
        },
        {
            "id": "s2",
            "type": "sim",
            "adapter": "simulated",
            "simulated": {"interval": 1, "values": {"t": {"kind": "sine"}}},
        },
        {
            "id": "m1",
            "type": "meter",
            "adapter": "modbus",
            "modbus": {"url": "tcp://127.0.0.1:1502", "points": {"t": {"address": 0}}},
        },
    ],
}


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_TEST_TOKEN", "token-one")


def _config(data: dict[str, Any]) -> Config:
    return load_config_text(yaml.safe_dump(data, sort_keys=False), "edged.yaml")


def _edited(**sections: Any) -> dict[str, Any]:
    data = copy.deepcopy(BASE)
    data.update(copy.deepcopy(sections))
    return data


def _sim(device_id: str) -> DeviceIdentity:
    return DeviceIdentity("sim", device_id)


def test_the_same_file_differs_in_nothing() -> None:
    diff = diff_configs(_config(BASE), _config(BASE))
    assert diff.empty
    assert diff.summary() == "no changes"


def test_added_removed_and_changed_devices_are_told_apart() -> None:
    devices = copy.deepcopy(BASE["devices"])
    devices[0]["simulated"]["interval"] = 2  # s1 changed
    del devices[1]  # s2 removed
    devices.append({**copy.deepcopy(BASE["devices"][1]), "id": "s3"})  # s3 added
    diff = diff_configs(_config(BASE), _config(_edited(devices=devices)))
    assert diff.added == {_sim("s3")}
    assert diff.removed == {_sim("s2")}
    assert diff.changed == {_sim("s1")}
    assert not diff.adapters and not diff.restart and not diff.live
    assert diff.devices_changed
    assert "1 device(s) added (sim/s3)" in diff.summary()


def test_moving_a_device_in_the_file_is_no_change() -> None:
    devices = list(reversed(copy.deepcopy(BASE["devices"])))
    assert diff_configs(_config(BASE), _config(_edited(devices=devices))).empty


def test_a_new_event_name_or_adapter_changes_the_device() -> None:
    devices = copy.deepcopy(BASE["devices"])
    devices[0]["event"] = "other"
    devices[1] = {
        "id": "s2",
        "type": "sim",
        "adapter": "modbus",
        "modbus": {"url": "tcp://127.0.0.1:1503", "points": {"t": {"address": 1}}},
    }
    diff = diff_configs(_config(BASE), _config(_edited(devices=devices)))
    assert diff.changed == {_sim("s1"), _sim("s2")}


def test_adapter_settings_change_their_adapter_only_when_in_use() -> None:
    buses = {"modbus": {"buses": {"line": {"url": "tcp://127.0.0.1:1502", "timeout": 2}}}}
    diff = diff_configs(_config(BASE), _config(_edited(adapters=buses)))
    assert diff.adapters == {"modbus"}
    assert not (diff.added or diff.removed or diff.changed)
    unused: dict[str, Any] = {"serial": {}}
    assert diff_configs(_config(BASE), _config(_edited(adapters=unused))).empty


def test_a_disabled_device_counts_as_removed() -> None:
    devices = copy.deepcopy(BASE["devices"])
    devices[2]["enabled"] = False
    diff = diff_configs(_config(BASE), _config(_edited(devices=devices)))
    assert diff.removed == {DeviceIdentity("meter", "m1")}
    assert diff.adapters == {"modbus"}  # no longer used: its runners go


def test_manage_changes_are_reported_apart_from_the_runners() -> None:
    devices = copy.deepcopy(BASE["devices"])
    devices[0]["manage"] = {"lifetime": 7200}
    diff = diff_configs(_config(BASE), _config(_edited(devices=devices)))
    assert diff.manage_changed == {_sim("s1")}
    assert not diff.changed  # its runner is untouched


def test_live_settings_and_settings_that_need_a_restart() -> None:
    platform = {**BASE["platform"], "host": "elsewhere.example", "qos": 0, "keepalive": 30}
    new = _config(
        _edited(
            platform=platform,
            logging={"level": "debug"},
            status={"interval": 5},
            commands={"timeout": 3},
            storage={"path": "/tmp/elsewhere.sqlite", "max_bytes": "2 MiB"},
            registration={"max_pending": 10},
            managed={"lifetime": 7200},
            control={"socket": "/tmp/other.sock"},
        )
    )
    diff = diff_configs(_config(BASE), new)
    assert set(diff.live) == {
        "logging.level",
        "status.interval",
        "commands.timeout",
        "platform.qos",
    }
    assert set(diff.restart) == {
        "platform.host",
        "platform.keepalive",
        "storage.path",
        "storage.max_bytes",
        "registration.max_pending",
        "managed.lifetime",
        "control.socket",
    }
    assert "needs a restart: platform.host" in diff.summary()


def test_a_new_token_needs_a_restart_and_is_never_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    old = _config(BASE)
    monkeypatch.setenv("EDGED_TEST_TOKEN", "token-two")
    diff = diff_configs(old, _config(BASE))
    assert diff.restart == ("platform.token",)
    assert "token-two" not in diff.summary() and "token-one" not in diff.summary()


def test_the_effective_config_keeps_restart_settings_and_takes_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = _config(BASE)
    monkeypatch.setenv("EDGED_TEST_TOKEN", "token-two")
    platform = {**BASE["platform"], "host": "elsewhere.example", "qos": 0}
    new = _config(_edited(platform=platform, status={"interval": 5}, storage={"path": "/x.db"}))
    running = effective_config(old, new)
    assert running.platform.host is None and running.platform.qos == 0
    assert running.token.reveal() == "token-one"
    assert running.storage == old.storage
    assert running.status.interval == 5
    assert running.devices == new.devices
    # the next reload of the same file says again what still waits for a restart
    again = diff_configs(running, new)
    assert set(again.restart) == {"platform.host", "platform.token", "storage.path"}
    assert not again.live
