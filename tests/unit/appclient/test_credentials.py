"""Settings and credentials from a YAML file and EDGED_APP_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from edged.appclient import IdentityError, ProxySettings, parse_proxy_url
from edged.appclient.credentials import CredentialsError, env_name, load

KEY = {"EDGED_APP_KEY": "a-org123-k1", "EDGED_APP_TOKEN": "tok"}


def test_environment_only_with_the_platform_defaults() -> None:
    loaded = load(None, KEY, random_suffix="cafe0001")
    config = loaded.config
    assert config.identity.org == "org123"
    assert config.identity.client_id == "a:org123:edged-cafe0001"
    assert config.api_key is not None and config.api_key.key == "a-org123-k1"
    connection = config.connection
    assert (connection.host, connection.port, connection.tls) == (
        "org123.messaging.internetofthings.ibmcloud.com",
        8883,
        True,
    )
    assert connection.transport == "tcp" and connection.proxy is None
    assert loaded.sources == ["environment: EDGED_APP_KEY, EDGED_APP_TOKEN"]


def test_the_environment_overrides_the_file(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text(
        "key: a-org123-k1\ntoken: from-file\napp_id: ops\nhost: broker.lan\nport: 1883\n"
        "tls: false\nkeepalive: 20\n"
    )
    path.chmod(0o600)
    env = {"EDGED_APP_TOKEN": "from-env", "EDGED_APP_PORT": "2883", "EDGED_APP_ID": "ops2"}
    loaded = load(path, env)
    config = loaded.config
    assert config.api_key is not None and config.api_key.token == "from-env"
    assert config.identity.client_id == "a:org123:ops2"
    assert (config.connection.host, config.connection.port) == ("broker.lan", 2883)
    assert config.connection.tls is False and config.connection.keepalive == 20
    assert loaded.warnings == []


def test_scalable_forms_from_settings() -> None:
    shared = load(None, {**KEY, "EDGED_APP_ID": "fleet", "EDGED_APP_SHARED": "true"}).config
    assert shared.identity.client_id == "A:org123:fleet"
    member = load(
        None,
        {**KEY, "EDGED_APP_ID": "fleet", "EDGED_APP_SHARED": "yes", "EDGED_APP_INSTANCE": "i1"},
    ).config
    assert member.identity.client_id == "A:org123:fleet:i1"


def test_websockets_and_proxy() -> None:
    env = {
        **KEY,
        "EDGED_APP_TRANSPORT": "websockets",
        "EDGED_APP_WS_PATH": "/ws",
        "EDGED_APP_PROXY": "http://me:p%40ss@proxy.lan:3128",
    }
    connection = load(None, env).config.connection
    assert (connection.transport, connection.port, connection.ws_path) == ("websockets", 443, "/ws")
    assert connection.proxy == ProxySettings("http", "proxy.lan", 3128, "me", "p@ss")
    assert "p@ss" not in repr(connection)
    assert connection.address == "wss://org123.messaging.internetofthings.ibmcloud.com:443/ws"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://proxy:21", "proxy scheme must be one of http, socks4, socks5"),
        ("http://proxy", "needs a host and a port"),
        ("socks5://:1080", "needs a host and a port"),
    ],
)
def test_bad_proxy_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_proxy_url(url)


def test_quickstart_needs_no_key_and_has_no_tls() -> None:
    config = load(None, {"EDGED_APP_ORG": "quickstart"}, random_suffix="1").config
    assert config.api_key is None
    assert (config.connection.port, config.connection.tls) == (1883, False)
    with pytest.raises(IdentityError, match="does not offer TLS"):
        load(None, {"EDGED_APP_ORG": "quickstart", "EDGED_APP_TLS": "true"})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "no credentials: set key and token"),
        ({"EDGED_APP_KEY": "a-org123-k1"}, r"the API token is missing \(EDGED_APP_TOKEN\)"),
        ({"EDGED_APP_ORG": "org123"}, r"the API key is missing \(EDGED_APP_KEY\)"),
        ({**KEY, "EDGED_APP_ORG": "other1"}, "belongs to org 'org123', not 'other1'"),
        ({**KEY, "EDGED_APP_PORT": "eighty"}, "port: expected a number"),
        ({**KEY, "EDGED_APP_TLS": "maybe"}, "tls: expected true or false"),
        ({**KEY, "EDGED_APP_TRANSPORT": "udp"}, "transport: expected tcp or websockets"),
        ({**KEY, "EDGED_APP_KEEPALIVE": "0"}, r"keepalive must be 1\.\.3600"),
    ],
)
def test_bad_settings_are_one_clear_error(env: dict[str, str], message: str) -> None:
    with pytest.raises(CredentialsError, match=message):
        load(None, env)


def test_a_key_of_another_form_needs_the_org() -> None:
    with pytest.raises(IdentityError, match="give the org"):
        load(None, {"EDGED_APP_KEY": "apikey", "EDGED_APP_TOKEN": "t"})
    config = load(None, {"EDGED_APP_KEY": "apikey", "EDGED_APP_TOKEN": "t", "EDGED_APP_ORG": "o1"})
    assert config.config.identity.org == "o1"


def test_file_problems(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    with pytest.raises(CredentialsError, match="No such file"):
        load(path, {})
    path.write_text("key: a-org123-k1\ntoken: [unclosed\n")
    with pytest.raises(CredentialsError, match=r"app.yaml:\d+: not valid YAML"):
        load(path, {})
    path.write_text("key: a-org123-k1\npassword: x\n")
    with pytest.raises(CredentialsError, match="unknown setting\\(s\\) password; known: key"):
        load(path, {})
    path.write_text("- a list\n")
    with pytest.raises(CredentialsError, match="expected a mapping"):
        load(path, {})


def test_a_token_others_can_read_is_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "app.yaml"
    path.write_text("key: a-org123-k1\ntoken: tok\n")
    path.chmod(0o644)
    loaded = load(path, {})
    assert loaded.warnings == [f"{path} holds a token and others may read it: chmod 600 {path}"]
    assert "tok\n" not in "".join(loaded.warnings)


def test_environment_names() -> None:
    assert env_name("key") == "EDGED_APP_KEY"
    assert env_name("app_id") == "EDGED_APP_ID"
    assert env_name("instance_id") == "EDGED_APP_INSTANCE"
    assert env_name("ca_file") == "EDGED_APP_CA_FILE"
