"""Through firewalls: MQTT over WebSockets (Mosquitto's listeners) and HTTP CONNECT / SOCKS5
proxies (tests/support/proxy.py), with the uplink's TLS checks and reconnect behaviour."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from edged.proxyurl import parse_proxy_url
from edged.uplink import Uplink, UplinkSettings
from tests.integration.uplink.helpers import (
    COMMANDS,
    EVENTS,
    AppClient,
    Inbox,
    command_topic,
    event_topic,
    eventually,
    running,
    settings_for,
)
from tests.support.broker import LocalCA, WsBroker
from tests.support.proxy import LocalProxy

pytestmark = pytest.mark.integration

LOGGER = "edged.uplink"


@pytest.fixture
def ws_broker(tmp_path: Path, test_ca: LocalCA) -> Iterator[WsBroker]:
    instance = WsBroker(workdir=tmp_path / "ws-broker", ca=test_ca)
    instance.start()
    try:
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def app(ws_broker: WsBroker) -> Iterator[AppClient]:
    client = AppClient(ws_broker).connect()
    client.subscribe(EVENTS)
    try:
        yield client
    finally:
        client.close()


def _ws(broker: WsBroker, *, tls: bool, **overrides: Any) -> UplinkSettings:
    values: dict[str, Any] = {
        "transport": "websockets",
        "host": "localhost" if tls else "127.0.0.1",
        "port": broker.wss_port if tls else broker.ws_port,
        "tls": tls,
        "ca_file": str(broker.ca.ca_file) if tls else None,
    }
    return settings_for(broker, **(values | overrides))


async def _round_trip(uplink: Uplink, app: AppClient, inbox: Inbox, size: int = 10) -> None:
    """Events out (QoS 0 and 1, one larger than a read), a command in (larger than a read)."""
    big = b"x" * 100_000
    uplink.set_subscriptions([(COMMANDS, 1)])
    async with running(uplink):
        await uplink.wait_connected()
        await eventually(lambda: uplink.stats.subscribed == 1, what="SUBACK")
        for n in range(size):
            await uplink.publish(event_topic(), b"e%d" % n, n % 2)
        await uplink.publish(event_topic("big"), big, 1)
        assert await uplink.flush(5)
        expected = {b"e%d" % n for n in range(size)} | {big}
        await eventually(lambda: set(app.payloads()) == expected, what="events at the app")
        app.publish(command_topic(), big + b"!", 1)
        app.publish(command_topic(), b"small", 1)
        await eventually(lambda: len(inbox.messages) == 2, what="commands at the gateway")
        assert inbox.payloads() == [big + b"!", b"small"]


@pytest.mark.parametrize("tls", [False, True], ids=["ws", "wss"])
async def test_websockets_carry_events_and_commands(
    ws_broker: WsBroker, app: AppClient, tls: bool
) -> None:
    inbox = Inbox()
    uplink = Uplink(_ws(ws_broker, tls=tls), inbox)
    assert uplink.settings.endpoint.startswith("wss://" if tls else "ws://")
    await _round_trip(uplink, app, inbox)


async def test_wss_checks_the_certificate(
    ws_broker: WsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    settings = _ws(ws_broker, tls=True, ca_file=str(ws_broker.ca.other_ca_file))
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        await eventually(lambda: uplink.stats.attempts >= 2, what="retries")
        assert not uplink.connected
        assert "not trusted" in uplink.stats.last_error


async def test_a_port_without_websockets_is_reported_as_such(
    ws_broker: WsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    uplink = Uplink(settings_for(ws_broker, transport="websockets"), Inbox())  # the MQTT port
    async with running(uplink):
        await eventually(lambda: uplink.stats.attempts >= 3, what="retries")
        assert not uplink.connected
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "did not accept a WebSocket" in errors[0].getMessage()
    assert "ws_path" in errors[0].getMessage()


@pytest.mark.parametrize(
    ("kind", "transport", "tls"),
    [
        ("http", "tcp", False),
        ("http", "tcp", True),
        ("http", "websockets", True),
        ("socks5", "tcp", True),
        ("socks5", "websockets", False),
    ],
)
async def test_through_a_proxy(
    ws_broker: WsBroker, app: AppClient, kind: str, transport: str, tls: bool
) -> None:
    inbox = Inbox()
    if transport == "websockets":
        settings = _ws(ws_broker, tls=tls)
    elif tls:
        settings = settings_for(
            ws_broker, host="localhost", port=ws_broker.tls_port, tls=True,
            ca_file=str(ws_broker.ca.ca_file),
        )  # fmt: skip
    else:
        settings = settings_for(ws_broker)
    with LocalProxy(kind) as proxy:
        scheme = "socks5h" if kind == "socks5" else kind
        uplink = Uplink(
            replace(settings, proxy=parse_proxy_url(f"{scheme}://127.0.0.1:{proxy.port}")), inbox
        )
        await _round_trip(uplink, app, inbox, size=4)
        assert proxy.targets == [(settings.host, settings.port)]


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_proxy_credentials_are_sent_and_never_logged(
    ws_broker: WsBroker, app: AppClient, kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "pr0xy-s3cret"
    with LocalProxy(kind, credentials=("edge", secret)) as proxy:
        uplink = Uplink(replace(settings_for(ws_broker), proxy=parse_proxy_url(proxy.url)), Inbox())
        async with running(uplink):
            await uplink.wait_connected()
        assert proxy.targets == [("127.0.0.1", ws_broker.port)]
        wrong = parse_proxy_url(proxy.url.replace(secret, "wrong-one"))
        uplink = Uplink(replace(settings_for(ws_broker), proxy=wrong), Inbox())
        async with running(uplink):
            await eventually(lambda: uplink.stats.attempts >= 2, what="retries")
            assert not uplink.connected
            assert "edge:********@" in uplink.stats.last_error
    assert any("through the proxy" in r.getMessage() for r in caplog.records)
    assert not any(
        secret in r.getMessage() or "wrong-one" in r.getMessage() for r in caplog.records
    )


async def test_recovers_when_the_proxy_drops_the_connection(
    ws_broker: WsBroker, app: AppClient
) -> None:
    """Every QoS 1 event arrives although the proxy cuts the tunnel twice mid-stream."""
    with LocalProxy("http") as proxy:
        settings = replace(_ws(ws_broker, tls=True), proxy=parse_proxy_url(proxy.url))
        uplink = Uplink(settings, Inbox())
        async with running(uplink):
            await uplink.wait_connected()
            total = 600
            for n in range(total):
                await uplink.publish(event_topic(), b"m%d" % n, 1)
                if n in (200, 400):
                    proxy.drop_all()
            assert await uplink.flush(10)
            expected = {b"m%d" % n for n in range(total)}
            await eventually(lambda: set(app.payloads()) >= expected, what="every event")
            assert uplink.stats.reconnects >= 2
            assert len(proxy.targets) == uplink.stats.connects


async def test_a_refusing_proxy_is_logged_once_and_retried_with_backoff(
    ws_broker: WsBroker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    with LocalProxy("http", refuse=403) as proxy:
        uplink = Uplink(replace(settings_for(ws_broker), proxy=parse_proxy_url(proxy.url)), Inbox())
        async with running(uplink):
            await eventually(lambda: proxy.refused >= 4, what="retries")
            assert not uplink.connected
            assert uplink.stats.retry_delay > 0
            errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
            assert len(errors) == 1, [r.getMessage() for r in errors]
            assert "refused to connect" in errors[0].getMessage()
            assert "403" in errors[0].getMessage()
            proxy.refuse = None
            await uplink.wait_connected()
        assert any("connected to" in r.getMessage() and "after" in r.getMessage()
                   for r in caplog.records if r.levelno == logging.INFO)  # fmt: skip


async def test_proxy_env_uses_the_environment_and_honours_no_proxy(
    ws_broker: WsBroker, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                 "ALL_PROXY", "no_proxy", "NO_PROXY"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    with LocalProxy("http") as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        uplink = Uplink(replace(settings_for(ws_broker), proxy="env"), Inbox())
        async with running(uplink):
            await uplink.wait_connected()
        assert len(proxy.targets) == 1
        monkeypatch.setenv("no_proxy", "example.com, 127.0.0.1")
        uplink = Uplink(replace(settings_for(ws_broker), proxy="env"), Inbox())
        async with running(uplink):
            await uplink.wait_connected()
        assert len(proxy.targets) == 1  # connected directly


async def test_a_malformed_proxy_variable_is_an_error_without_its_value(
    ws_broker: WsBroker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, LOGGER)
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.setenv("HTTP_PROXY", "ftp://user:hunter22@proxy:21")
    uplink = Uplink(replace(settings_for(ws_broker), proxy="env"), Inbox())
    async with running(uplink):
        await eventually(lambda: uplink.stats.attempts >= 2, what="retries")
        assert not uplink.connected
    assert "http_proxy environment variable" in uplink.stats.last_error
    assert not any("hunter22" in r.getMessage() for r in caplog.records)
