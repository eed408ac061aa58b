"""UplinkSettings from the platform config, and its own validation."""

from __future__ import annotations

from dataclasses import replace

import pytest

from edged.config import Secret
from edged.config.models import PlatformConfig
from edged.uplink import GATEWAY_USERNAME, UplinkSettings


def _platform(**extra: object) -> PlatformConfig:
    return PlatformConfig.model_validate(
        {"org": "abc123", "gateway": {"type": "gw", "id": "g1"}, **extra}
    )


def test_defaults_are_tls_on_8883_with_token_auth_and_mqtt_311() -> None:
    token = Secret("s3cret-token")
    settings = UplinkSettings.from_config(_platform(), token, "g:abc123:gw:g1")
    assert settings.client_id == "g:abc123:gw:g1"
    assert (settings.host, settings.port) == (
        "abc123.messaging.internetofthings.ibmcloud.com",
        8883,
    )
    assert settings.endpoint == "abc123.messaging.internetofthings.ibmcloud.com:8883"
    assert (settings.username, settings.password) == (GATEWAY_USERNAME, token)
    assert settings.username == "use-token-auth"
    assert (settings.tls, settings.ca_file, settings.mqtt_version) == (True, None, "3.1.1")
    assert settings.persistent_session
    assert (settings.keepalive, settings.connect_timeout, settings.max_inflight) == (
        60.0,
        30.0,
        100,
    )
    assert (settings.reconnect_initial, settings.reconnect_max) == (1.0, 120.0)
    assert (settings.refused_initial, settings.refused_max) == (60.0, 900.0)
    assert "s3cret" not in repr(settings)


def test_plain_tcp_mqtt5_and_explicit_host_come_from_the_config() -> None:
    platform = _platform(
        host="broker.local",
        tls=False,
        mqtt_version=5,
        persistent_session=False,
        session_expiry="1h",
        reconnect={"initial": "2s", "max": "30s"},
        max_inflight=20,
    )
    settings = UplinkSettings.from_config(platform, Secret("t"), "g:abc123:gw:g1")
    assert (settings.host, settings.port, settings.tls) == ("broker.local", 1883, False)
    assert (settings.mqtt_version, settings.persistent_session, settings.session_expiry) == (
        "5",
        False,
        3600.0,
    )
    assert (settings.reconnect_initial, settings.reconnect_max, settings.max_inflight) == (
        2.0,
        30.0,
        20,
    )


@pytest.mark.parametrize(
    "change",
    [
        {"mqtt_version": "3.1"},
        {"max_inflight": 0},
        {"max_inflight": 65536},
        {"reconnect_initial": 0},
        {"reconnect_initial": 5, "reconnect_max": 1},
        {"refused_initial": 10, "refused_max": 1},
        {"connect_timeout": 0},
    ],
)
def test_rejects_nonsense(change: dict[str, object]) -> None:
    settings = UplinkSettings.from_config(_platform(), Secret("t"), "g:abc123:gw:g1")
    with pytest.raises(ValueError):
        replace(settings, **change)  # type: ignore[arg-type]
