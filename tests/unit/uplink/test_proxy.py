"""Proxy URLs, the proxy environment variables and the WebSocket wrapper, without a network."""

from __future__ import annotations

import socket
import threading

import pytest
from paho.mqtt.client import _WebsocketWrapper

from edged.proxyurl import ProxyURL, parse_proxy_url
from edged.uplink.connect import ConnectError, FailureKind, open_connection
from edged.uplink.proxy import proxy_from_environment
from edged.uplink.websocket import WebSocket


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("http://proxy.lan:3128", ProxyURL("http", "proxy.lan", 3128)),
        ("HTTP://proxy.lan", ProxyURL("http", "proxy.lan", 8080)),
        ("socks5://10.0.0.1", ProxyURL("socks5", "10.0.0.1", 1080)),
        ("socks5h://[::1]:1081/", ProxyURL("socks5h", "::1", 1081)),
    ],
)
def test_parse(text: str, expected: ProxyURL) -> None:
    assert parse_proxy_url(text) == expected


def test_credentials_are_unquoted_and_redacted() -> None:
    proxy = parse_proxy_url("http://us%40er:p%3Ass@proxy:3128")
    assert proxy.username == "us@er"
    assert proxy.password is not None and proxy.password.reveal() == "p:ss"
    assert str(proxy) == "http://us@er:********@proxy:3128"
    assert "p:ss" not in repr(proxy)
    assert str(parse_proxy_url("socks5://[::1]:9")) == "socks5://[::1]:9"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://proxy:443", "scheme 'https' is not supported"),
        ("proxy:3128", "scheme 'proxy' is not supported"),
        ("//proxy:3128", "scheme none is not supported"),
        ("http://", "has no host name"),
        ("http://u:secret@proxy:70000", "not a valid proxy URL"),
        ("http://proxy:1/x", "with no path"),
        ("http://proxy:1?x=1", "with no path"),
    ],
)
def test_bad_urls(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        parse_proxy_url(text)
    assert "secret" not in str(info.value)


ENV = {
    "https_proxy": "http://tls-proxy:1",
    "HTTPS_PROXY": "http://ignored:1",
    "HTTP_PROXY": "http://plain-proxy:2",
    "ALL_PROXY": "socks5h://all:3",
}


@pytest.mark.parametrize(
    ("env", "tls", "host", "expected"),
    [
        (ENV, True, "broker", ("https_proxy", "tls-proxy")),
        (ENV, False, "broker", ("http_proxy", "plain-proxy")),
        ({"ALL_PROXY": "socks5h://all:3"}, True, "broker", ("all_proxy", "all")),
        ({}, True, "broker", None),
        (ENV | {"no_proxy": "*"}, True, "broker", None),
        (ENV | {"NO_PROXY": "other, .example.com"}, True, "org.example.com", None),
        (ENV | {"no_proxy": "example.com:443"}, True, "a.b.example.com", None),
        (ENV | {"no_proxy": "example.com"}, True, "badexample.com", ("https_proxy", "tls-proxy")),
        (ENV | {"no_proxy": "10.0.0.0/8"}, True, "10.1.2.3", None),
        (ENV | {"no_proxy": "10.0.0.0/8"}, True, "11.1.2.3", ("https_proxy", "tls-proxy")),
        (ENV | {"no_proxy": "[::1]:8883"}, True, "::1", None),
    ],
)
def test_environment(
    env: dict[str, str], tls: bool, host: str, expected: tuple[str, str] | None
) -> None:
    found = proxy_from_environment(host, tls=tls, environ=env)
    assert (found and (found[0], found[1].host)) == expected


def test_a_malformed_variable_names_itself_not_its_value() -> None:
    with pytest.raises(ValueError, match="the https_proxy environment variable") as info:
        proxy_from_environment("b", tls=True, environ={"https_proxy": "ftp://u:hunter2@p"})
    assert "hunter2" not in str(info.value)


def test_an_unreachable_proxy_is_a_network_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
    proxy = parse_proxy_url(f"http://u:pw@127.0.0.1:{port}")
    with pytest.raises(ConnectError) as info:
        open_connection("broker", 8883, 2.0, tls=False, ca_file=None, proxy=proxy)
    assert info.value.kind is FailureKind.UNREACHABLE
    assert f"the proxy http://u:********@127.0.0.1:{port}" in info.value.message


def test_a_proxy_that_is_not_http_is_a_proxy_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        proxy = parse_proxy_url(f"http://127.0.0.1:{port}")

        def garbage() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

        thread = threading.Thread(target=garbage)
        thread.start()
        try:
            with pytest.raises(ConnectError) as info:
                open_connection("broker", 1883, 2.0, tls=False, ca_file=None, proxy=proxy)
        finally:
            thread.join(5)
    assert info.value.kind is FailureKind.PROXY
    assert "did not answer CONNECT like an HTTP proxy" in info.value.message


def test_paho_websocket_wrapper_interface() -> None:
    """Canary: what edged.uplink.websocket relies on in paho's private wrapper."""
    assert issubclass(WebSocket, _WebsocketWrapper)
    for name in ("recv", "send", "close", "fileno", "pending", "setblocking", "_create_frame"):
        assert callable(getattr(_WebsocketWrapper, name)), name
    frame = WebSocket._create_frame(WebSocket.__new__(WebSocket), 0x9, bytearray(b"ping"), 0)
    assert frame[1] & 0x80, "client frames are masked, even a PONG paho asks to send unmasked"
    assert len(frame) == 2 + 4 + 4
