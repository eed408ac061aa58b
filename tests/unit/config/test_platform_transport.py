"""platform.transport, ws_path and proxy: defaults, ports, and clear errors with file:line."""

from __future__ import annotations

import pytest

from edged.config import Config, load_config_text
from edged.config.models import PlatformConfig
from edged.errors import ConfigError
from edged.proxyurl import ProxyURL
from edged.uplink import UplinkSettings

HEAD = """\
devices: []
platform:
  org: abc123
  gateway: {type: gw, id: gw-1}
  token_env: EDGED_TEST_TOKEN
"""


def _load(extra: str, monkeypatch: pytest.MonkeyPatch) -> Config:
    monkeypatch.setenv("EDGED_TEST_TOKEN", "tok")
    return load_config_text(HEAD + extra, "edged.yaml")


def _problems(extra: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("EDGED_TEST_TOKEN", "tok")
    with pytest.raises(ConfigError) as info:
        load_config_text(HEAD + extra, "edged.yaml")
    return "\n".join(info.value.problems)


def _platform(**values: object) -> PlatformConfig:
    return PlatformConfig.model_validate({"org": "o", "gateway": {"type": "t", "id": "i"}} | values)


def test_defaults_are_tcp_direct() -> None:
    platform = _platform()
    assert (platform.transport, platform.ws_path, platform.proxy) == ("tcp", "/mqtt", None)


@pytest.mark.parametrize(
    ("values", "port"),
    [
        ({}, 8883),
        ({"tls": False}, 1883),
        ({"transport": "websockets"}, 443),
        ({"transport": "websockets", "tls": False}, 80),
        ({"transport": "websockets", "port": 8443}, 8443),
    ],
)
def test_default_ports(values: dict[str, object], port: int) -> None:
    assert _platform(**values).resolved_port == port


def test_websockets_and_proxy_reach_the_uplink_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load(
        "  transport: websockets\n  ws_path: /ws/mqtt\n  proxy: http://me:pw@proxy.lan:3128\n",
        monkeypatch,
    )
    settings = UplinkSettings.from_config(config.platform, config.token, "g:abc123:gw:gw-1")
    assert settings.transport == "websockets"
    assert settings.endpoint == "wss://abc123.messaging.internetofthings.ibmcloud.com:443/ws/mqtt"
    assert isinstance(settings.proxy, ProxyURL)
    assert (settings.proxy.host, settings.proxy.port, settings.proxy.username) == (
        "proxy.lan",
        3128,
        "me",
    )
    assert "pw" not in repr(settings) and "pw" not in str(settings.proxy)


def test_proxy_env_is_kept_for_the_connect_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    config = _load("  proxy: env\n", monkeypatch)
    settings = UplinkSettings.from_config(config.platform, config.token, "g:abc123:gw:gw-1")
    assert settings.proxy == "env"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("  transport: quic\n", "edged.yaml:6: platform.transport:"),
        ("  ws_path: mqtt\n", "edged.yaml:6: platform.ws_path: must start with '/'"),
        ("  ws_path: /my path\n", "edged.yaml:6: platform.ws_path: must be printable ASCII"),
        ("  proxy: ftp://proxy:21\n", "edged.yaml:6: platform.proxy: proxy URL scheme 'ftp'"),
        ("  proxy: proxy.lan:3128\n", "edged.yaml:6: platform.proxy:"),
        ("  proxy: http://:3128\n", "edged.yaml:6: platform.proxy: the proxy URL has no host"),
        ("  proxy: http://proxy:99999\n", "edged.yaml:6: platform.proxy: not a valid proxy URL"),
        ("  proxy: http://proxy/path\n", "edged.yaml:6: platform.proxy: a proxy URL is"),
    ],
)
def test_bad_values_are_refused_with_file_and_line(
    extra: str, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert expected in _problems(extra, monkeypatch)


def test_a_bad_proxy_url_never_shows_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    problems = _problems("  proxy: gopher://me:hunter22@proxy:70\n", monkeypatch)
    assert "platform.proxy" in problems
    assert "hunter22" not in problems
