"""The managed section and per-device manage keys: shapes, refusals with their place, warnings."""

from __future__ import annotations

import pytest

from edged.config import load_config_text
from edged.errors import ConfigError

HEAD = (
    "platform: {org: abc123, host: localhost, port: 1883, tls: false,"
    " gateway: {type: gw, id: g1}, token_env: EDGED_TEST_TOKEN}\n"
)
DEVICE = "  - {id: d1, type: t, adapter: simulated, simulated: {values: {a: {}}}"


@pytest.fixture(autouse=True)
def _token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGED_TEST_TOKEN", "secret")


def _problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config_text(text, "edged.yaml")
    return list(caught.value.problems)


def test_a_full_managed_section_and_a_managed_device_load() -> None:
    config = load_config_text(
        HEAD + "managed:\n  lifetime: 2h\n  actions: {reboot: {run: [/bin/true]}}\n"
        "  custom: {b1: {a1: {run: [/bin/echo], parameters: [{name: x, required: true}]}}}\n"
        "devices:\n" + DEVICE + ", manage: {actions: {reboot: {command: reset, data: {a: 1}}},"
        " location: {latitude: 1.5, longitude: 2.5}}}\n",
        "edged.yaml",
    )
    assert config.managed.lifetime == 7200
    assert config.managed.actions.reboot is not None
    assert config.managed.actions.reboot.run == ("/bin/true",)
    assert config.managed.custom["b1"]["a1"].parameters[0].required
    manage = config.devices[0].manage
    assert manage is not None and manage.actions.reboot is not None
    assert (manage.actions.reboot.command, manage.actions.reboot.data) == ("reset", {"a": 1})
    assert config.warnings == ()


def test_devices_without_a_manage_key_are_not_managed() -> None:
    config = load_config_text(HEAD + "devices:\n" + DEVICE + "}\n", "edged.yaml")
    assert config.devices[0].manage is None
    assert config.managed.enabled


def test_short_lifetimes_are_accepted_with_a_warning_each() -> None:
    config = load_config_text(
        HEAD + "managed: {lifetime: 60}\ndevices:\n" + DEVICE + ", manage: {lifetime: 10s}}\n",
        "edged.yaml",
    )
    assert [w.split(": warning")[0] for w in config.warnings] == [
        "edged.yaml:2: managed.lifetime",
        "edged.yaml:4: devices[0].manage.lifetime",
    ]


@pytest.mark.parametrize(
    ("section", "where", "says"),
    [
        ("managed: {actions: {reboot: {}}}", "managed.actions.reboot", "exactly one"),
        (
            "managed: {actions: {reboot: {run: [/bin/true], command: x}}}",
            "managed.actions.reboot",
            "exactly one",
        ),
        ("managed: {actions: {reboot: {run: [reboot]}}}", "managed.actions.reboot", "absolute"),
        (
            "managed: {actions: {reboot: {command: reset}}}",
            "managed",
            "the gateway's actions use run or builtin",
        ),
        ("managed: {custom: {'bad bundle': {a: {run: [/bin/true]}}}}", "managed.custom", "1-255"),
        (
            "managed: {custom: {b: {a: {run: [/bin/true],"
            " parameters: [{name: p, pattern: '('}]}}}}",
            "managed.custom.b.a.parameters[0].pattern",
            "regular expression",
        ),
        ("managed: {location: {latitude: 91, longitude: 0}}", "managed.location.latitude", ""),
        ("managed: {colour: red}", "managed.colour", "unknown key"),
    ],
)
def test_bad_managed_settings_are_refused_with_their_key_path(
    section: str, where: str, says: str
) -> None:
    problems = _problems(HEAD + section + "\n")
    assert any(f": {where}:" in p and says in p for p in problems), problems
