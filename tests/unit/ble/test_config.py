"""The BLE config models: normalisation, every rule's message, per-controller settings, imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest
from pydantic import ValidationError

from edged.adapters.ble.config import (
    ControllerSettings,
    DeviceConfig,
    Settings,
    cross_check,
    normalize_uuid,
)
from edged.config import load_config_text
from edged.errors import ConfigError

pytestmark = pytest.mark.ble

BINDKEY = "231d39c1d7cc1ab1aee224cd096db932"


def device(**section: Any) -> DeviceConfig:
    return DeviceConfig.model_validate(section)


def error_of(**section: Any) -> str:
    with pytest.raises(ValidationError) as info:
        DeviceConfig.model_validate(section)
    return "; ".join(str(e["msg"]) for e in info.value.errors())


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("181a", "0000181a-0000-1000-8000-00805f9b34fb"),
        ("0xFCD2", "0000fcd2-0000-1000-8000-00805f9b34fb"),
        (0x2A6E, "00002a6e-0000-1000-8000-00805f9b34fb"),
        ("0000FEAA", "0000feaa-0000-1000-8000-00805f9b34fb"),
        ("6E400001-B5A3-F393-E0A9-E50E24DCCA9E", "6e400001-b5a3-f393-e0a9-e50e24dcca9e"),
    ],
)
def test_uuids_normalise_to_bluez_form(given: object, expected: str) -> None:
    assert normalize_uuid(given) == expected


def test_addresses_normalise_and_defaults() -> None:
    config = device(address="a4-c1-38-0a-0b-0c")
    assert config.address == "A4:C1:38:0A:0B:0C"
    assert config.adapter == "hci0"
    assert config.match_key == ("address", "A4:C1:38:0A:0B:0C")
    assert (config.timeout, config.min_interval, config.max_interval) == (300.0, 5.0, 0.0)
    assert config.report == "change"
    assert config.rssi is True


def test_bthome_shorthand_and_secret_bindkey() -> None:
    assert device(name="x", bthome=True).bthome is not None
    assert device(name="x", bthome=False).bthome is None
    config = device(name="x", bthome={"bindkey": BINDKEY})
    assert config.bthome is not None
    assert config.bthome.bindkey is not None
    assert config.bthome.bindkey.get_secret_value() == BINDKEY
    assert BINDKEY not in repr(config)
    assert BINDKEY not in str(config.model_dump())


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({}, "give address, name or service_uuid"),
        ({"address": "A4:C1:38:0A:0B"}, "expected a Bluetooth address"),
        ({"name": "x", "adapter": "usb0"}, "expected a Bluetooth controller name like hci0"),
        ({"service_uuid": "18"}, "expected a UUID"),
        (
            {"service_uuid": "181a", "gatt": {"commands": {"on": {"uuid": "1", "payload": "01"}}}},
            "expected a UUID",
        ),
        (
            {"service_uuid": "181a", "gatt": {"poll": "5s", "characteristics": []}},
            "give characteristics to read",
        ),
        (
            {
                "service_uuid": "181a",
                "gatt": {"commands": {"on": {"uuid": "2a00", "payload": "01"}}},
            },
            "a gatt device needs address or name",
        ),
        (
            {"name": "x", "min_interval": "10s", "max_interval": "5s"},
            "max_interval must not be shorter",
        ),
        ({"name": "x", "bthome": {"bindkey": "abc"}}, "a BTHome bindkey is 32 hex characters"),
        (
            {"name": "x", "manufacturer_data": [{"company_id": 70000, "fields": {"a": {}}}]},
            "less than or equal",
        ),
        ({"name": "x", "manufacturer_data": [{"company_id": 1, "fields": {}}]}, "at least 1 item"),
        (
            {
                "name": "x",
                "manufacturer_data": [{"company_id": 1, "prefix": "zz", "fields": {"a": {}}}],
            },
            "hex bytes",
        ),
        (
            {"name": "x", "service_data": [{"uuid": "181a", "fields": {"a b": {}}}]},
            "field names are 1-64",
        ),
        (
            {"name": "x", "service_data": [{"uuid": "181a", "fields": {"a": {"type": "string"}}}]},
            "needs length",
        ),
        (
            {"name": "x", "service_data": [{"uuid": "181a", "fields": {"a": {"length": 2}}}]},
            "length applies only to string and hex",
        ),
        (
            {
                "name": "x",
                "service_data": [
                    {"uuid": "181a", "fields": {"a": {"type": "hex", "length": 2, "scale": 2}}}
                ],
            },
            "scale and add do not apply",
        ),
        (
            {"name": "x", "service_data": [{"uuid": "181a", "fields": {"a": {"scale": 0}}}]},
            "scale must not be zero",
        ),
        (
            {
                "name": "x",
                "service_data": [{"uuid": "181a", "fields": {"a": {"type": "float32", "bit": 1}}}],
            },
            "bit applies only to integer types",
        ),
        (
            {"name": "x", "service_data": [{"uuid": "181a", "fields": {"a": {"bit": 8}}}]},
            "bit 8 is outside a uint8",
        ),
        (
            {
                "name": "x",
                "gatt": {"characteristics": [{"uuid": "2a6e", "read": False, "fields": {"a": {}}}]},
            },
            "set read, notify or both",
        ),
        (
            {"name": "x", "gatt": {"commands": {"c": {"uuid": "2a00", "min": 5, "max": 1}}}},
            "min must not exceed max",
        ),
        (
            {
                "name": "x",
                "gatt": {
                    "commands": {"c": {"uuid": "2a00"}},
                    "reconnect": {"initial": "1m", "max": "1s"},
                },
            },
            "initial must not exceed max",
        ),
        ({"name": "x", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_rules_explain_themselves(section: dict[str, Any], message: str) -> None:
    assert message in error_of(**section)


def test_controller_overrides_take_only_their_explicit_keys() -> None:
    settings = Settings.model_validate(
        {
            "max_connections": 2,
            "silence_timeout": "5m",
            "controllers": {"hci1": {"max_connections": 7}},
        }
    )
    assert settings.for_controller("hci0") == ControllerSettings(
        max_connections=2, silence_timeout=300.0
    )
    hci1 = settings.for_controller("hci1")
    assert (hci1.max_connections, hci1.silence_timeout, hci1.power_cycle) == (7, 300.0, True)


def test_cross_check_finds_devices_recognised_twice() -> None:
    devices = [
        (("devices", 0), device(address="A4:C1:38:00:00:01")),
        (("devices", 1), device(address="a4:c1:38:00:00:01")),
        (("devices", 2), device(address="A4:C1:38:00:00:01", adapter="hci1")),
        (("devices", 3), device(name="Kitchen")),
        (("devices", 4), device(name="Kitchen")),
    ]
    assert list(cross_check(devices, Settings())) == [
        (
            ("devices", 1, "ble", "address"),
            "devices[0] on hci0 already has address A4:C1:38:00:00:01",
        ),
        (("devices", 4, "ble", "name"), "devices[3] on hci0 already has name Kitchen"),
    ]


CONFIG = textwrap.dedent(
    """\
    platform:
      org: abc123
      gateway: {type: gw, id: gw-1}
      token_env: EDGED_TEST_TOKEN
    devices:
      - id: thermo
        type: bthome
        adapter: ble
        ble:
          address: A4:C1:38:00:00:01
          bthome: {bindkey: %s}
      - id: twin
        type: bthome
        adapter: ble
        ble:
          address: a4:c1:38:00:00:01
          min_interval: soon
    adapters:
      ble:
        max_connections: 0
    """
)


def test_errors_point_at_file_and_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_TEST_TOKEN", "t")
    with pytest.raises(ConfigError) as info:
        load_config_text(CONFIG % BINDKEY, "edged.yaml")
    problems = info.value.problems
    assert "edged.yaml:17: devices[1].ble.min_interval: expected a duration" in problems[0]
    assert any(p.startswith("edged.yaml:20: adapters.ble.max_connections:") for p in problems), (
        problems
    )
    assert BINDKEY not in "\n".join(problems)


def test_duplicate_address_is_reported_at_the_second_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("EDGED_TEST_TOKEN", "t")
    text = (
        (CONFIG % BINDKEY)
        .replace("min_interval: soon", "min_interval: 1s")
        .replace("max_connections: 0", "max_connections: 1")
    )
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "edged.yaml")
    assert info.value.problems == [
        "edged.yaml:16: devices[1].ble.address:"
        " devices[0] on hci0 already has address A4:C1:38:00:00:01"
    ]


def _modules_after(code: str) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={"EDGED_TEST_TOKEN": "t", "PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    return set(result.stdout.split())


def test_checking_a_ble_config_imports_no_bluetooth_library() -> None:
    valid = (
        (CONFIG % BINDKEY)
        .replace("min_interval: soon", "name: x")
        .replace("max_connections: 0", "max_connections: 1")
        .replace("a4:c1:38:00:00:01", "a4:c1:38:00:00:02")
    )
    modules = _modules_after(
        f"from edged.config import load_config_text\nload_config_text({valid!r})"
    )
    assert "edged.adapters.ble.config" in modules
    assert not {
        m
        for m in modules
        if m.split(".")[0] in {"bleak", "bleak_retry_connector", "bthome_ble", "dbus_fast"}
    }
    assert "edged.adapters.ble.adapter" not in modules


def test_advert_only_configs_do_not_load_gatt_or_bthome_libraries() -> None:
    modules = _modules_after(
        "from edged.adapters.ble.adapter import create_adapters\n"
        "from edged.adapters.base import DeviceSpec\n"
        "from edged.adapters.ble.config import DeviceConfig, Settings\n"
        "from edged.model import DeviceIdentity\n"
        "config = DeviceConfig(address='A4:C1:38:00:00:01')\n"
        "spec = DeviceSpec(DeviceIdentity('t', 'd'), config, 'r', ())\n"
        "create_adapters([spec], Settings(), None)"
    )
    assert "bleak" not in modules, "bleak itself loads only when scanning starts"
    assert not {m for m in modules if m.split(".")[0] in {"bleak_retry_connector", "bthome_ble"}}
