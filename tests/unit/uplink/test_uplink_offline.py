"""Uplink behaviour that needs no broker: the payload cap, closing, stats, validation."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from edged.errors import PayloadTooLarge
from edged.uplink import MAX_PAYLOAD, Uplink, UplinkClosedError, UplinkSettings
from tests.support.uplink_settings import settings_for_port


def _settings() -> UplinkSettings:
    return replace(
        settings_for_port(1, token="the-token"),
        client_id="g:o:t:i",
        session_expiry=60,
        connect_timeout=1,
        reconnect_initial=1,
        reconnect_max=2,
        refused_initial=1,
        refused_max=2,
        max_inflight=10,
        stable_after=10.0,
    )


async def test_oversize_payload_is_refused_and_counted_without_a_connection() -> None:
    uplink = Uplink(_settings(), lambda message: None)
    with pytest.raises(PayloadTooLarge, match="131073-byte payload"):
        await uplink.publish("a/b", b"x" * (MAX_PAYLOAD + 1), 1)
    stats = uplink.stats
    assert (stats.refused_oversize, stats.published, stats.state) == (1, 0, "idle")


async def test_publish_waits_while_not_connected_and_fails_once_closed() -> None:
    uplink = Uplink(_settings(), lambda message: None)
    waiting = asyncio.ensure_future(uplink.publish("a/b", b"x", 1))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await uplink.close(1)
    assert uplink.stats.state == "closed"
    await asyncio.sleep(0)
    waiting.cancel()
    with pytest.raises((asyncio.CancelledError, UplinkClosedError)):
        await waiting
    with pytest.raises(UplinkClosedError):
        await uplink.publish("a/b", b"x", 0)
    await uplink.run()  # returns at once after close


async def test_flush_is_immediately_true_with_nothing_in_flight() -> None:
    uplink = Uplink(_settings(), lambda message: None)
    assert await uplink.flush(0.01)


def test_invalid_subscriptions_are_refused() -> None:
    uplink = Uplink(_settings(), lambda message: None)
    with pytest.raises(ValueError):
        uplink.set_subscriptions([("a/#", 5)])
