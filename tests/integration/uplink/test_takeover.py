"""A second client with the gateway's client id: detected, reported once, and no flapping."""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import replace

import pytest

from edged.uplink import Uplink
from edged.uplink.reasons import SESSION_TAKEN_OVER
from tests.integration.uplink.helpers import (
    AppClient,
    Inbox,
    eventually,
    running,
    settings_for,
)
from tests.support.broker import GATEWAY_USER, Broker
from tests.support.uplink_settings import CLIENT_ID, settings_for_port

pytestmark = pytest.mark.integration

CLASH = f"another client is using client id {CLIENT_ID}"


def _impostor(apps: Callable[..., AppClient], broker: Broker, *, v5: bool) -> AppClient:
    return apps(client_id=CLIENT_ID, username=GATEWAY_USER, password=broker.gateway_token, v5=v5)


def _messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


async def test_mqtt311_repeated_server_closes_after_connect_mean_takeover(
    broker: Broker, apps: Callable[..., AppClient], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="edged.uplink")
    settings = settings_for(
        broker,
        stable_after=5.0,
        reconnect_initial=0.05,
        reconnect_max=0.2,
        refused_initial=1.0,
        refused_max=2.0,
    )
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        for kick in range(3):
            await eventually(lambda: uplink.connected, what=f"connection before kick {kick}")
            assert not uplink.stats.suspected_takeover
            impostor = _impostor(apps, broker, v5=False)  # mosquitto closes the older connection
            await eventually(lambda: not uplink.connected, what=f"kick {kick}")
            impostor.close()
        stats = uplink.stats
        assert stats.suspected_takeover
        assert CLASH in stats.last_error
        assert len(_messages(caplog, logging.ERROR, CLASH)) == 1
        # Only the first of the quick drops is a WARNING; the rest are DEBUG.
        assert len(_messages(caplog, logging.WARNING, "lost the connection")) == 1
        # It now waits on the slow schedule (refused_initial 1.0 s, jittered) instead of flapping.
        assert stats.retry_delay >= 0.8
        await asyncio.sleep(0.5)
        assert not uplink.connected
        assert uplink.stats.attempts == 3
        await eventually(lambda: uplink.connected, within=3, what="the slow retry")


def _mosquitto_version() -> tuple[int, ...]:
    out = subprocess.run(
        [shutil.which("mosquitto") or "/usr/sbin/mosquitto", "-h"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    match = re.search(r"mosquitto version (\d+)\.(\d+)\.(\d+)", out)
    assert match, out
    return tuple(int(part) for part in match.groups())


async def test_mqtt5_takeover_is_detected_by_reason_code_or_by_repeated_closes(
    broker: Broker, apps: Callable[..., AppClient], caplog: pytest.LogCaptureFixture
) -> None:
    """mosquitto >= 2.0.15 sends DISCONNECT 142 to the older MQTT 5 client; older ones only
    close the socket, so there the 3.1.1 heuristic has to do."""
    caplog.set_level(logging.DEBUG, logger="edged.uplink")
    sends_reason = _mosquitto_version() >= (2, 0, 15)
    settings = settings_for(
        broker, mqtt_version="5", stable_after=5.0, refused_initial=1.0, refused_max=2.0
    )
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        kicks = 0
        while not uplink.stats.suspected_takeover and kicks < 3:
            await eventually(lambda: uplink.connected, what=f"connection before kick {kicks}")
            impostor = _impostor(apps, broker, v5=True)
            await eventually(lambda: not uplink.connected, what=f"kick {kicks}")
            impostor.close()
            kicks += 1
            await asyncio.sleep(0.02)
        assert uplink.stats.suspected_takeover
        if not sends_reason:
            assert kicks == 3
        # paho 2.1 drops a DISCONNECT reason code sent without properties (as mosquitto sends
        # it), so even a newer mosquitto may need the three-closes heuristic there.
        assert kicks in (1, 3)
        errors = _messages(caplog, logging.ERROR, CLASH)
        assert len(errors) == 1
        assert ("session taken over" in errors[0]) == (kicks == 1)
        assert uplink.stats.retry_delay >= 0.8


async def test_mqtt5_disconnect_142_from_the_server_is_a_takeover_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A minimal MQTT 5 server that accepts, then sends DISCONNECT "session taken over".

    Stands in for brokers that send reason 142 where the local mosquitto is too old to;
    the real paho client parses it.
    """
    caplog.set_level(logging.DEBUG, logger="edged.uplink")
    connections = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.read(1024)  # CONNECT
        writer.write(bytes([0x20, 3, 0, 0, 0]))  # CONNACK: no session, success, no properties
        await writer.drain()
        await asyncio.sleep(0.05)
        # DISCONNECT 0x8E with a Reason String property: paho 2.1 reads the reason code only
        # when properties follow it (paho 2.2 also without).
        reason = b"taken over"
        properties = bytes([0x1F, 0, len(reason)]) + reason
        writer.write(
            bytes([0xE0, 2 + len(properties), SESSION_TAKEN_OVER, len(properties)]) + properties
        )
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        settings = replace(
            settings_for_port(port), mqtt_version="5", refused_initial=1.0, refused_max=2.0
        )
        uplink = Uplink(settings, Inbox())
        async with running(uplink):
            await eventually(lambda: uplink.stats.suspected_takeover, what="the diagnosis")
            assert connections == 1
            assert uplink.stats.connects == 1
            errors = _messages(caplog, logging.ERROR, CLASH)
            assert len(errors) == 1
            assert "session taken over" in errors[0]
            assert uplink.stats.retry_delay >= 0.8
    finally:
        server.close()
        await server.wait_closed()
