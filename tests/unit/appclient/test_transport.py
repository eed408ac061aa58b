"""The transport and proxy settings reach paho as they are (paho's own API does the work)."""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest

from edged.appclient import AppClientError, ConnectionSettings, ProxySettings
from edged.appclient.connection import Connection, _close_sockets


def _connection(settings: ConnectionSettings) -> Connection:
    return Connection(
        settings,
        "a:org1:t",
        username="a-org1-k",
        password="tok",
        cond=threading.Condition(),
        deliver=lambda *_: None,
    )


def test_websockets_with_a_path() -> None:
    settings = ConnectionSettings("h", 443, tls=False, transport="websockets", ws_path="/ws/mqtt")
    client = _connection(settings)._new_client()
    try:
        assert client.transport == "websockets"
        assert client._websocket_path == "/ws/mqtt"  # paho's own attribute, set by ws_set_options
    finally:
        _close_sockets(client)


def test_tcp_by_default() -> None:
    client = _connection(ConnectionSettings("h", 1883, tls=False))._new_client()
    try:
        assert client.transport == "tcp"
    finally:
        _close_sockets(client)


def test_a_proxy_goes_to_proxy_set(monkeypatch: pytest.MonkeyPatch) -> None:
    given: dict[str, Any] = {}
    proxy = ProxySettings("socks5", "proxy.lan", 1080, "me", "pw")
    monkeypatch.setattr(
        ProxySettings, "paho_args", lambda self: {"proxy_addr": self.host, "proxy_port": self.port}
    )
    import paho.mqtt.client as mqtt

    monkeypatch.setattr(mqtt.Client, "proxy_set", lambda self, **args: given.update(args))
    client = _connection(ConnectionSettings("h", 1883, tls=False, proxy=proxy))._new_client()
    _close_sockets(client)
    assert given == {"proxy_addr": "proxy.lan", "proxy_port": 1080}


def test_proxy_settings_become_pysocks_arguments() -> None:
    import socks  # type: ignore[import-untyped]

    args = ProxySettings("http", "proxy.lan", 3128).paho_args()
    assert args == {"proxy_type": socks.HTTP, "proxy_addr": "proxy.lan", "proxy_port": 3128}


def test_a_proxy_without_pysocks_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "socks", None)  # as if python3-socks were missing
    proxy = ProxySettings("http", "proxy.lan", 3128)
    with pytest.raises(AppClientError, match="a proxy needs PySocks"):
        _connection(ConnectionSettings("h", 1883, tls=False, proxy=proxy))._new_client()
