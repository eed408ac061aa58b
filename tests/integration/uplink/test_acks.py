"""Delivery futures against a real mosquitto: each QoS 1 message's PUBACK reported by identity.

:meth:`Uplink.publish` returns a future per message. These tests check that it resolves when,
and only when, the broker acknowledged that message: in order, once, across re-sends after a
broker restart (with and without the session), not while the broker is frozen, failed when
the uplink closes first, and failed with the broker's reason when an MQTT 5 PUBACK rejects it.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Iterator

import pytest

from edged.uplink import PublishRejected, Uplink, UplinkClosedError
from tests.integration.uplink.faultproxy import Down, FaultProxy
from tests.integration.uplink.helpers import (
    EVENTS,
    AppClient,
    Inbox,
    event_topic,
    eventually,
    running,
    settings_for,
)
from tests.support.broker import Broker

pytestmark = pytest.mark.integration

DENIED = "iot-2/type/test-gw/id/gw-0001/cmd/reboot/fmt/json"
"""The broker's ACL lets the gateway read this topic, not write it."""


class Recorder:
    """Watches delivery futures: the order they were resolved in, and with what."""

    def __init__(self) -> None:
        self.order: list[int] = []
        self.outcomes: dict[int, BaseException | None] = {}

    def watch(self, index: int, delivery: asyncio.Future[None]) -> None:
        def done(future: asyncio.Future[None]) -> None:
            assert index not in self.outcomes, f"delivery {index} completed twice"
            self.order.append(index)
            self.outcomes[index] = future.exception()

        delivery.add_done_callback(done)


@pytest.fixture
async def proxy(broker: Broker) -> AsyncIterator[FaultProxy]:
    """A fault-injecting proxy in front of the broker's plain listener."""
    instance = await FaultProxy(broker.port).start()
    try:
        yield instance
    finally:
        await instance.close()


@pytest.fixture
def frozen(broker: Broker) -> Iterator[Callable[[], None]]:
    """``frozen()`` stops the broker with SIGSTOP; it is continued after the test at the latest."""
    stopped: list[int] = []

    def freeze() -> None:
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        stopped.append(broker.process.pid)

    yield freeze
    for pid in stopped:
        os.kill(pid, signal.SIGCONT)


async def _publish_all(
    uplink: Uplink, count: int, recorder: Recorder, prefix: str = "m"
) -> list[asyncio.Future[None]]:
    deliveries = []
    for index in range(count):
        delivery = await uplink.publish(event_topic(), f"{prefix}{index}".encode(), 1)
        recorder.watch(index, delivery)
        deliveries.append(delivery)
    return deliveries


async def test_each_qos1_delivery_resolves_once_in_order_after_its_puback(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    app = apps()
    app.subscribe(EVENTS)
    recorder = Recorder()
    uplink = Uplink(settings_for(broker, max_inflight=20), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        deliveries = await _publish_all(uplink, 300, recorder)  # 15 windows
        async with asyncio.timeout(10):
            await asyncio.gather(*deliveries)
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
        assert recorder.order == list(range(300))
        assert set(recorder.outcomes.values()) == {None}
        assert (uplink.stats.acked, uplink.stats.inflight) == (300, 0)
        await eventually(lambda: len(app.payloads()) == 300, what="all 300 at the subscriber")


async def test_qos0_delivery_is_done_when_handed_over_even_to_a_frozen_broker(
    broker: Broker, frozen: Callable[[], None]
) -> None:
    uplink = Uplink(settings_for(broker), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        frozen()
        deliveries = [await uplink.publish(event_topic(), b"q0", 0) for _ in range(5)]
        assert all(d.done() and d.result() is None for d in deliveries)
        assert len({id(d) for d in deliveries}) == 5, "one future per message"


async def test_a_frozen_broker_leaves_deliveries_pending_until_it_continues(
    broker: Broker, frozen: Callable[[], None]
) -> None:
    recorder = Recorder()
    uplink = Uplink(settings_for(broker, keepalive=30), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        frozen()
        deliveries = await _publish_all(uplink, 20, recorder)
        # Nothing can resolve them but a PUBACK, and the broker cannot send one: give it time to.
        await asyncio.sleep(0.5)
        assert recorder.order == []
        assert uplink.stats.inflight == 20
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGCONT)
        async with asyncio.timeout(10):
            await asyncio.gather(*deliveries)
        await asyncio.sleep(0)
        assert recorder.order == list(range(20))
        assert uplink.stats.reconnects == 0, "the same connection carried the PUBACKs"


@pytest.mark.parametrize("session", ["kept", "lost"])
async def test_deliveries_resolve_after_paho_resends_to_a_restarted_broker(
    broker: Broker, proxy: FaultProxy, apps: Callable[..., AppClient], session: str
) -> None:
    """The broker took every message but its PUBACKs were lost on the way; after a restart paho
    re-sends them (DUP) and the PUBACKs to the re-sent copies resolve the futures, also when
    the restarted broker no longer has the session (paho re-sends everything either way)."""
    app = apps(client_id="a:testorg:durable", clean=False)  # its session outlives the restart
    app.subscribe(EVENTS)
    recorder = Recorder()
    settings = settings_for(broker, port=proxy.port, persistent_session=True, reconnect_max=0.2)
    uplink = Uplink(settings, Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        proxy.current.down = Down.DROP  # the broker's PUBACKs never reach the uplink
        deliveries = await _publish_all(uplink, 30, recorder)
        await eventually(lambda: len(app.payloads()) == 30, what="the broker took all 30")
        assert recorder.order == [], "no PUBACK arrived"
        if session == "kept":
            broker.restart()  # SIGTERM saves the sessions
        else:
            broker.stop()
            shutil.rmtree(broker.workdir / "data")  # the broker forgets every session
            broker.start()
        async with asyncio.timeout(10):
            await asyncio.gather(*deliveries)
        await asyncio.sleep(0)
        assert recorder.order == list(range(30))
        assert set(recorder.outcomes.values()) == {None}
        assert uplink.stats.reconnects == 1
        if session == "kept":
            await eventually(lambda: len(app.payloads()) >= 60, what="the 30 re-sent copies")
            assert set(app.payloads()) == {f"m{index}".encode() for index in range(30)}


async def test_close_fails_the_unacknowledged_deliveries(
    broker: Broker, frozen: Callable[[], None], caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    uplink = Uplink(settings_for(broker), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        acked = await _publish_all(uplink, 3, recorder, prefix="before")
        async with asyncio.timeout(5):
            await asyncio.gather(*acked)
        frozen()
        unacked = [await uplink.publish(event_topic(), f"u{i}".encode(), 1) for i in range(10)]
        for index, delivery in enumerate(unacked, start=3):
            recorder.watch(index, delivery)
        ignored = await uplink.publish(event_topic(), b"nobody waits for this", 1)
        await uplink.close(0.2)
    assert all(d.result() is None for d in acked)
    for delivery in unacked:
        with pytest.raises(UplinkClosedError, match="closed before the broker acknowledged"):
            delivery.result()
    await asyncio.sleep(0)
    assert recorder.order == list(range(13))
    assert uplink.stats.inflight == 11, "paho still holds them; a restart re-sends them"
    # A caller may ignore its deliveries: a failed one must not be reported as an unread error.
    del ignored
    gc.collect()
    assert not [r for r in caplog.records if r.name == "asyncio"], caplog.text


@pytest.mark.parametrize(
    ("version", "rejected"), [("5", True), ("3.1.1", False)], ids=["mqtt5", "mqtt311"]
)
async def test_a_publication_the_broker_denies(
    broker: Broker,
    apps: Callable[..., AppClient],
    caplog: pytest.LogCaptureFixture,
    version: str,
    rejected: bool,
) -> None:
    """mosquitto answers a publication its ACL denies with PUBACK "Not authorized" (0x87) at
    MQTT 5; an MQTT 3.1.1 PUBACK has no reason code, so there the denial is invisible."""
    caplog.set_level(logging.WARNING, logger="edged.uplink")
    app = apps()
    app.subscribe("#")
    recorder = Recorder()
    uplink = Uplink(settings_for(broker, mqtt_version=version), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        before = await uplink.publish(event_topic(), b"allowed-1", 1)
        denied = await uplink.publish(DENIED, b"{}", 1)
        after = await uplink.publish(event_topic(), b"allowed-2", 1)
        for index, delivery in enumerate((before, denied, after)):
            recorder.watch(index, delivery)
        async with asyncio.timeout(5):
            await asyncio.gather(before, denied, after, return_exceptions=True)
        await asyncio.sleep(0)
    assert recorder.order == [0, 1, 2]
    assert before.result() is None
    assert after.result() is None
    if rejected:
        error = denied.exception()
        assert isinstance(error, PublishRejected)
        assert (error.reason_code, error.reason_name) == (0x87, "Not authorized")
        assert uplink.stats.rejected == 1
        assert "rejected a publication: Not authorized (135)" in caplog.text
    else:
        assert denied.result() is None
        assert uplink.stats.rejected == 0
    await eventually(lambda: len(app.payloads()) == 2, what="the two allowed messages")
    assert app.payloads() == [b"allowed-1", b"allowed-2"], "the denied one was not delivered"
