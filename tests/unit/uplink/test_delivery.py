"""Delivery futures settled from a real paho client fed PUBACKs by hand (no broker).

The broker's side is the other end of a socketpair: the tests write CONNACK and PUBACK packets
there and let paho read them, so paho itself decides which messages it still holds. This covers
what mosquitto will not do: acknowledge out of order, or let paho drop a message unacknowledged.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest
from paho.mqtt.client import MQTTMessageInfo
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edged.errors import PublishRejected
from edged.uplink import DeliveryLost, UplinkClosedError
from edged.uplink.delivery import Deliveries
from edged.uplink.pahoclient import LoopClient


def puback(mid: int, reason: int | None = None) -> bytes:
    if reason is None:
        return b"\x40\x02" + mid.to_bytes(2, "big")
    return b"\x40\x03" + mid.to_bytes(2, "big") + bytes([reason])


class Session:
    """A LoopClient connected to a socketpair, and the deliveries of what it publishes."""

    def __init__(self, *, v5: bool = False) -> None:
        protocol = MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311
        self.client = LoopClient(client_id="g:o:t:i", reconnect_on_failure=False, protocol=protocol)
        self.deliveries = Deliveries(self.client.awaiting_ack)
        if v5:
            self.client.on_publish = self._on_publish
        self.ours, self.broker = socket.socketpair()
        self.broker.settimeout(2)
        self.client.connect_async("broker.invalid", 1883, 30)
        self.client.hand_over(self.ours)
        assert self.client.reconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS
        self.client.loop_write()
        self.broker.recv(1024)  # CONNECT
        self.answer(b"\x20\x03\x00\x00\x00" if v5 else b"\x20\x02\x00\x00")

    def _on_publish(
        self, client: object, userdata: object, mid: int, reason: ReasonCode, props: Properties
    ) -> None:
        if reason.is_failure:
            self.deliveries.refused(mid, reason.value, reason.getName())

    def publish(self) -> tuple[int, asyncio.Future[None]]:
        info = self.client.publish("a/b", b"x", 1)
        assert info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS
        delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.deliveries.track(info, delivery)
        return info.mid, delivery

    def answer(self, data: bytes) -> None:
        """The broker sends ``data``; paho reads it, then the deliveries are settled."""
        self.broker.sendall(data)
        self.client.loop_read()
        self.deliveries.settle()

    def close(self) -> None:
        self.client.force_close()
        self.ours.close()
        self.broker.close()


@pytest.fixture
def session() -> Iterator[Session]:
    instance = Session()
    yield instance
    instance.close()


async def test_pubacks_resolve_their_own_deliveries_even_out_of_order(session: Session) -> None:
    sent = [session.publish() for _ in range(4)]
    (m0, d0), (m1, d1), (m2, d2), (m3, d3) = sent
    session.answer(puback(m2))
    assert [d.done() for d in (d0, d1, d2, d3)] == [False, False, True, False]
    session.answer(puback(m0) + puback(m3))
    assert [d.done() for d in (d0, d1, d2, d3)] == [True, False, True, True]
    session.answer(puback(m1))
    assert all(d.result() is None for d in (d0, d1, d2, d3))
    assert len(session.deliveries) == 0


async def test_a_puback_for_an_unknown_id_resolves_nothing(session: Session) -> None:
    mid, delivery = session.publish()
    session.answer(puback(mid + 1))
    assert not delivery.done()
    session.answer(puback(mid) + puback(mid))  # the duplicate is ignored by paho
    assert delivery.result() is None


async def test_a_message_paho_drops_without_puback_is_reported_lost(session: Session) -> None:
    (m0, d0), (_m1, d1) = session.publish(), session.publish()
    session.answer(puback(m0))
    session.client.awaiting_ack.clear()  # what paho 2.2's drop_out_messages() does
    session.deliveries.settle()
    assert d0.result() is None
    with pytest.raises(DeliveryLost):
        d1.result()


async def test_a_cancelled_delivery_is_skipped_and_close_fails_the_rest(session: Session) -> None:
    (m0, d0), (_m1, d1), (_m2, d2) = [session.publish() for _ in range(3)]
    d0.cancel()
    session.answer(puback(m0))  # settling a cancelled future must not raise
    assert session.deliveries.abandon() == 2
    for delivery in (d1, d2):
        with pytest.raises(UplinkClosedError):
            delivery.result()
    assert len(session.deliveries) == 0


async def test_a_reused_packet_id_keeps_the_order() -> None:
    held: dict[int, object] = {}
    deliveries = Deliveries(held)
    loop = asyncio.get_running_loop()
    first, second, third = loop.create_future(), loop.create_future(), loop.create_future()
    old = MQTTMessageInfo(7)
    old._set_as_published()  # acknowledged, but not settled yet
    deliveries.track(old, first)
    held[8] = object()
    deliveries.track(MQTTMessageInfo(8), second)
    held[7] = object()  # paho took a new message under the same id
    deliveries.track(MQTTMessageInfo(7), third)
    assert first.result() is None
    assert not second.done() and not third.done()
    del held[8]
    deliveries.settle()
    assert second.done() and not third.done()


async def test_a_rejecting_mqtt5_puback_fails_only_its_delivery() -> None:
    session = Session(v5=True)
    try:
        (m0, d0), (m1, d1) = session.publish(), session.publish()
        session.answer(puback(m0, 0x87) + puback(m1, 0x00))
        error = d0.exception()
        assert isinstance(error, PublishRejected)
        assert (error.reason_code, error.reason_name) == (0x87, "Not authorized")
        assert "Not authorized (135)" in str(error)
        assert d1.result() is None
    finally:
        session.close()
