"""Delivery guarantees against a real mosquitto: zero loss across outages and broker crashes,
sessions and subscriptions across restarts, the payload cap, flushing on close."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from edged.errors import PayloadTooLarge
from edged.uplink import MAX_PAYLOAD, Uplink
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

pytestmark = pytest.mark.integration


async def test_qos1_published_while_the_broker_is_down_is_delivered_after(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    app = apps(client_id="a:testorg:durable", clean=False)  # its session outlives the restart
    app.subscribe(EVENTS)
    uplink = Uplink(settings_for(broker, reconnect_initial=0.05, reconnect_max=0.1), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        broker.stop()
        await eventually(lambda: not uplink.connected, what="the drop")
        publishing = asyncio.ensure_future(
            asyncio.gather(*(uplink.publish(event_topic(), f"m{i}".encode(), 1) for i in range(30)))
        )
        await asyncio.sleep(0.3)
        assert not publishing.done(), "publish must wait while disconnected (backpressure)"
        assert uplink.stats.published == 0
        broker.start()
        await asyncio.wait_for(publishing, 10)
        assert await uplink.flush(5)
        await eventually(lambda: len(set(app.payloads())) == 30, what="all 30 messages")
        assert set(app.payloads()) == {f"m{i}".encode() for i in range(30)}


async def test_unacknowledged_qos1_is_resent_after_a_broker_crash(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    """Messages written to a frozen broker, which then dies, reach the restarted broker."""
    uplink = Uplink(settings_for(broker, reconnect_initial=1.0, reconnect_max=1.0), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        assert broker.process is not None
        os.kill(broker.process.pid, signal.SIGSTOP)
        for index in range(40):
            await uplink.publish(event_topic(), f"crash-{index}".encode(), 1)
        await asyncio.sleep(0.1)
        assert uplink.stats.inflight == 40, "the frozen broker cannot have acknowledged any"
        broker.stop(signal.SIGKILL)  # restarted below with the same persistence directory
        await eventually(lambda: not uplink.connected, what="the drop")
        broker.start()
        app = apps(client_id="a:testorg:after-crash")  # before the uplink's retry (>= 0.8 s)
        app.subscribe(EVENTS)
        assert not uplink.connected, "the test needs the subscriber in place before the resend"
        assert await uplink.flush(10)
        await eventually(lambda: len(set(app.payloads())) == 40, what="all 40 re-sent messages")
        assert uplink.stats.reconnects == 1
        assert uplink.stats.acked == 40


async def test_subscriptions_are_restored_when_the_broker_lost_the_session(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    inbox = Inbox()
    uplink = Uplink(settings_for(broker), inbox)
    uplink.set_subscriptions([(COMMANDS, 1)])
    async with running(uplink):
        await uplink.wait_connected()
        await eventually(lambda: uplink.stats.subscribed == 1, what="first SUBACK")
        broker.stop()
        for leftover in (broker.workdir / "data").iterdir():
            leftover.unlink()  # the broker forgets every session
        broker.start()
        await eventually(lambda: uplink.stats.reconnects == 1, what="reconnect")
        await eventually(lambda: uplink.stats.subscribed == 1, what="SUBACK again")
        assert uplink.stats.subscribe_packets == 2
        app = apps()
        app.publish(command_topic("after-loss"), b"{}", qos=1)
        await eventually(lambda: len(inbox.messages) == 1, what="command after the session loss")


@pytest.mark.parametrize("version", ["3.1.1", "5"])
async def test_session_survives_a_broker_restart_and_queues_commands_while_offline(
    broker: Broker, apps: Callable[..., AppClient], version: str
) -> None:
    inbox = Inbox()
    settings = settings_for(broker, mqtt_version=version)
    uplink = Uplink(settings, inbox)
    uplink.set_subscriptions([(COMMANDS, 1)])
    async with running(uplink):
        await uplink.wait_connected()
        await eventually(lambda: uplink.stats.subscribed == 1, what="SUBACK")
        broker.restart()  # SIGTERM saves the session, then the same persistence directory
        await eventually(lambda: uplink.stats.reconnects == 1, what="reconnect")
        app = apps()
        app.publish(command_topic("kept"), b"1", qos=1)
        await eventually(lambda: inbox.payloads() == [b"1"], what="command on the kept session")
        assert uplink.stats.subscribe_packets == 1, "a resumed session needs no new SUBSCRIBE"

    # The gateway is offline (clean DISCONNECT, session kept): a command waits for it.
    app.publish(command_topic("queued"), b"2", qos=1)
    second = Inbox()
    again = Uplink(settings, second)
    again.set_subscriptions([(COMMANDS, 1)])
    async with running(again):
        await eventually(lambda: second.payloads() == [b"2"], what="the queued command")
        assert second.messages[0].topic == command_topic("queued")


async def test_subscription_changes_apply_while_connected(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    inbox = Inbox()
    uplink = Uplink(settings_for(broker), inbox)
    first = "iot-2/type/test-gw/id/gw-0001/cmd/first/fmt/+"
    second = "iot-2/type/test-gw/id/gw-0001/cmd/second/fmt/+"
    uplink.set_subscriptions([(first, 1)])
    app = apps()
    async with running(uplink):
        await uplink.wait_connected()
        await eventually(lambda: uplink.stats.subscribed == 1, what="SUBACK")
        uplink.set_subscriptions([(second, 1)])
        await eventually(lambda: uplink.stats.subscribe_packets == 2, what="the second SUBSCRIBE")
        await eventually(lambda: uplink.stats.subscribed == 1, what="its SUBACK")
        app.publish(command_topic("first"), b"old", qos=1)
        app.publish(command_topic("second"), b"new", qos=1)
        await eventually(lambda: inbox.payloads() == [b"new"], what="only the new filter")
        await asyncio.sleep(0.1)
        assert inbox.payloads() == [b"new"]


async def test_payload_cap_refuses_and_counts_but_sends_the_limit(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    app = apps()
    app.subscribe(EVENTS)
    uplink = Uplink(settings_for(broker), Inbox())
    async with running(uplink):
        await uplink.wait_connected()
        with pytest.raises(PayloadTooLarge):
            await uplink.publish(event_topic(), b"x" * (MAX_PAYLOAD + 1), 1)
        await uplink.publish(event_topic(), b"y" * MAX_PAYLOAD, 1)
        assert await uplink.flush(5)
        await eventually(lambda: len(app.payloads()) == 1, what="the largest allowed payload")
        assert len(app.payloads()[0]) == MAX_PAYLOAD
        stats = uplink.stats
        assert (stats.refused_oversize, stats.published, stats.acked, stats.connected) == (
            1,
            1,
            1,
            True,
        )


async def test_close_flushes_in_flight_messages(
    broker: Broker, apps: Callable[..., AppClient]
) -> None:
    app = apps()
    app.subscribe(EVENTS)
    uplink = Uplink(settings_for(broker, max_inflight=100), Inbox())
    async with running(uplink) as task:
        await uplink.wait_connected()
        for index in range(1000):
            await uplink.publish(event_topic(), str(index).encode(), 1)
        assert uplink.stats.inflight > 0
        await uplink.close(5)
        assert task.done()
    stats = uplink.stats
    assert (stats.state, stats.inflight, stats.acked) == ("closed", 0, 1000)
    await eventually(lambda: len(app.payloads()) == 1000, what="all 1000 at the app")
    with pytest.raises(RuntimeError):
        await uplink.publish(event_topic(), b"late", 1)
