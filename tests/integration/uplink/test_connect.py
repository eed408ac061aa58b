"""Connecting: TCP, TLS, MQTT 5, and every way it can fail, against a real mosquitto."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace

import pytest

from edged.config import Secret
from edged.uplink import Uplink
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
from tests.support.broker import Broker
from tests.support.uplink_settings import settings_for_port

pytestmark = pytest.mark.integration

LOGGER = "edged.uplink"


def _records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == level and text in r.getMessage()]


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_connects_over_tcp_publishes_and_receives(
    broker: Broker, apps: Callable[..., AppClient], version: str
) -> None:
    app = apps()
    app.subscribe(EVENTS)
    inbox = Inbox()
    uplink = Uplink(settings_for(broker, mqtt_version=version), inbox)
    uplink.set_subscriptions([(COMMANDS, 1)])
    async with running(uplink):
        await uplink.wait_connected()
        await eventually(lambda: uplink.stats.subscribe_packets == 1, what="SUBSCRIBE sent")
        await uplink.publish(event_topic(), b'{"q":0}', 0)
        await uplink.publish(event_topic(), b'{"q":1}', 1)
        assert await uplink.flush(5)
        await eventually(lambda: len(app.payloads()) == 2, what="events at the app")
        assert sorted(app.payloads()) == [b'{"q":0}', b'{"q":1}']
        assert not any(m.retain for m in app.received)

        app.publish(command_topic("reboot"), b'{"now":true}', qos=1)
        await eventually(lambda: len(inbox.messages) == 1, what="command at the gateway")
        message = inbox.messages[0]
        assert (message.topic, message.payload, message.qos, message.retain) == (
            command_topic("reboot"),
            b'{"now":true}',
            1,
            False,
        )
        stats = uplink.stats
        assert (stats.state, stats.connected, stats.connects, stats.reconnects) == (
            "connected",
            True,
            1,
            0,
        )
        assert (stats.published, stats.acked, stats.inflight, stats.received) == (2, 1, 0, 1)
    assert uplink.stats.state == "closed"
    assert not uplink.connected


async def test_connects_over_tls_with_the_ca_file(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    app = apps()
    app.subscribe(EVENTS)
    settings = settings_for(
        broker, tls=True, host="localhost", port=broker.tls_port, ca_file=str(broker.ca.ca_file)
    )
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        for index in range(20):
            await uplink.publish(event_topic(), str(index).encode(), 1)
        assert await uplink.flush(5)
        await eventually(lambda: len(app.payloads()) == 20, what="20 events over TLS")


async def test_untrusted_certificate_is_reported_once_and_retried_with_backoff(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    other_ca = str(broker.ca.other_ca_file)
    settings = settings_for(
        broker,
        tls=True,
        host="localhost",
        port=broker.tls_port,
        ca_file=other_ca,
        reconnect_initial=0.05,
        reconnect_max=0.4,
    )
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        await eventually(lambda: uplink.stats.attempts >= 5, what="five attempts")
        stats = uplink.stats
        assert not stats.connected
        assert "not trusted by the CA file" in stats.last_error
        assert other_ca in stats.last_error
        errors = _records(caplog, logging.ERROR, "not trusted")
        assert len(errors) == 1, [r.getMessage() for r in errors]
        assert len(_records(caplog, logging.DEBUG, "not trusted")) >= 3
        # Backoff grows: 0.05 doubling (with jitter) up to 0.4, never a tight loop.
        assert stats.retry_delay >= 0.3
        await asyncio.sleep(1.0)  # a busy loop would show in the attempt count
        assert uplink.stats.attempts <= 12


async def test_hostname_mismatch_names_the_host(
    mismatched_broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    broker = mismatched_broker
    settings = settings_for(
        broker, tls=True, host="localhost", port=broker.tls_port, ca_file=str(broker.ca.ca_file)
    )
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        await eventually(lambda: uplink.stats.attempts >= 2, what="two attempts")
        assert "not valid for the host name localhost" in uplink.stats.last_error
        assert len(_records(caplog, logging.ERROR, "not valid for the host name localhost")) == 1


async def test_tls_to_the_plain_port_says_handshake_failed(broker: Broker) -> None:
    settings = settings_for(broker, tls=True, host="localhost", ca_file=str(broker.ca.ca_file))
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        await eventually(
            lambda: uplink.stats.attempts >= 1 and uplink.stats.last_error != "", what="failure"
        )
        assert f"TLS handshake with localhost:{broker.port} failed" in uplink.stats.last_error


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_wrong_token_is_reported_once_and_retried_slowly(
    broker: Broker, caplog: pytest.LogCaptureFixture, version: str
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    wrong = "wrong-token-do-not-log-me"
    settings = settings_for(
        broker, password=Secret(wrong), mqtt_version=version, refused_initial=0.1, refused_max=0.4
    )
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        await eventually(lambda: uplink.stats.attempts >= 3, what="three refused attempts")
        stats = uplink.stats
        assert not stats.connected
        assert stats.connects == 0
        assert "refused the gateway's token" in stats.last_error
        assert len(_records(caplog, logging.ERROR, "refused the gateway's token")) == 1
        await asyncio.sleep(1.0)  # a busy loop would show in the attempt count
        # refused_initial 0.1 doubling to 0.4: about 4-6 attempts in ~1.5 s, never dozens.
        assert uplink.stats.attempts <= 8
        assert uplink.stats.retry_delay >= 0.3
    assert wrong not in caplog.text
    assert wrong not in uplink.stats.last_error


async def test_unreachable_broker_warns_once_then_recovers(
    broker: Broker, apps: Callable[..., AppClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    broker.stop()
    uplink = Uplink(settings_for(broker, reconnect_initial=0.05, reconnect_max=0.2), Inbox())
    async with running(uplink):
        await eventually(lambda: uplink.stats.attempts >= 4, what="four failed attempts")
        assert "refused the connection" in uplink.stats.last_error
        assert len(_records(caplog, logging.WARNING, "refused the connection")) == 1
        assert len(_records(caplog, logging.DEBUG, "refused the connection")) >= 2
        broker.start()
        await eventually(lambda: uplink.connected, what="reconnection")
        recovered = _records(caplog, logging.INFO, "failed attempt(s)")
        assert len(recovered) == 1, caplog.text
        assert uplink.stats.state == "connected"


async def test_close_before_run_and_cancel_while_connected(broker: Broker) -> None:
    uplink = Uplink(settings_for(broker), Inbox())
    task = asyncio.create_task(uplink.run())
    await uplink.wait_connected()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not uplink.connected
    assert uplink.stats.state == "idle"

    unused = Uplink(settings_for(broker), Inbox())
    await unused.close(1)
    assert unused.stats.state == "closed"


async def test_close_while_a_connection_attempt_hangs() -> None:
    """A server that takes the TCP connection but never answers the TLS handshake."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        settings = replace(settings_for_port(port), tls=True, connect_timeout=1.0)
        uplink = Uplink(settings, Inbox())
        task = asyncio.create_task(uplink.run())
        await eventually(
            lambda: any(t.name == "edged-uplink-connect" for t in threading.enumerate()),
            what="the connect thread",
        )
        await asyncio.sleep(0.1)
        assert uplink.stats.state == "connecting"
        started = time.monotonic()
        await uplink.close(5)
        assert task.done()
        assert time.monotonic() - started < 2.0, "bounded by connect_timeout"
        assert not any(t.name == "edged-uplink-connect" for t in threading.enumerate())
        await task


async def test_frozen_broker_is_detected_by_keepalive_and_nothing_is_lost(
    broker: Broker, apps: Callable[..., AppClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    app = apps(client_id="a:testorg:durable", clean=False)
    app.subscribe(EVENTS)
    settings = settings_for(broker, keepalive=1, connect_timeout=1.0, reconnect_max=0.2)
    uplink = Uplink(settings, Inbox())
    assert broker.process is not None
    async with running(uplink):
        await uplink.wait_connected()
        os.kill(broker.process.pid, signal.SIGSTOP)
        try:
            for index in range(10):
                await uplink.publish(event_topic(), f"frozen-{index}".encode(), 1)
            await eventually(lambda: not uplink.connected, within=6, what="keepalive timeout")
            # logged as the connection task moves on, just after the flag drops
            await eventually(lambda: "keepalive" in caplog.text, within=3, what="its log line")
        finally:
            os.kill(broker.process.pid, signal.SIGCONT)
        await eventually(lambda: uplink.connected, within=6, what="recovery")
        assert await uplink.flush(5)
        expected = {f"frozen-{index}".encode() for index in range(10)}
        await eventually(lambda: expected <= set(app.payloads()), what="all ten messages")


async def test_connect_listeners_hear_every_accepted_connection(broker: Broker) -> None:
    uplink = Uplink(settings_for(broker), Inbox())
    heard: list[bool] = []
    uplink.add_connect_listener(lambda: heard.append(uplink.connected))
    async with running(uplink):
        await eventually(lambda: heard == [True], what="the first connection heard")
        broker.restart()
        await eventually(lambda: heard == [True, True], within=15, what="the reconnection heard")
