"""Canary: the paho internals edged.uplink.pahoclient relies on, checked on the installed paho.

No broker: the handed-over socket is one end of a socketpair, so the CONNECT paho writes can
be read back from the other end.
"""

from __future__ import annotations

import collections
import socket
from typing import Any

import pytest
from paho.mqtt.enums import MQTTErrorCode

from edged.uplink.pahoclient import LoopClient, acknowledged

# The real paho is the counterpart: "integration" makes CI run this on the oldest paho too.
pytestmark = pytest.mark.integration


def test_reconnect_uses_the_handed_over_socket_and_paho_keeps_qos1_until_puback() -> None:
    client = LoopClient(client_id="g:o:t:i", reconnect_on_failure=False)
    client.username_pw_set("use-token-auth", "token")
    events: list[str] = []
    client.on_socket_open = lambda c, u, s: events.append("open")
    client.on_socket_close = lambda c, u, s: events.append("close")
    client.on_socket_register_write = lambda c, u, s: events.append("want-write")
    client.on_socket_unregister_write = lambda c, u, s: events.append("no-write")
    ours, broker_end = socket.socketpair()
    try:
        client.connect_async("broker.invalid", 1883, 30)  # no I/O
        assert isinstance(client.awaiting_ack, collections.OrderedDict)

        # QoS 1 while disconnected: NO_CONN, but paho keeps it for after CONNACK.
        info = client.publish("a/b", b"x", 1)
        assert info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN
        assert len(client.awaiting_ack) == 1
        assert client.publish("a/b", b"y", 0).rc == MQTTErrorCode.MQTT_ERR_NO_CONN

        client.hand_over(ours)
        assert client.reconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert client.socket() is ours
        assert events == ["open", "want-write"]
        assert client.want_write()
        assert client.loop_write() == MQTTErrorCode.MQTT_ERR_SUCCESS
        assert events[-1] == "no-write"
        broker_end.settimeout(2)
        packet = broker_end.recv(1024)
        assert packet[0] == 0x10, "CONNECT"
        assert b"g:o:t:i" in packet

        client.force_close()
        assert events[-1] == "close"
        assert client.socket() is None
        assert len(client.awaiting_ack) == 1, "still kept for the next connection"
    finally:
        ours.close()
        broker_end.close()


def test_reconnect_without_a_socket_fails_instead_of_blocking() -> None:
    client = LoopClient(client_id="g:o:t:i", reconnect_on_failure=False)
    client.connect_async("broker.invalid", 1883, 30)
    raised: Any = None
    try:
        client.reconnect()
    except ConnectionError as exc:
        raised = exc
    assert raised is not None


def _publish_flags(data: bytes) -> list[int]:
    """The fixed-header first byte of each PUBLISH framed in ``data``."""
    flags: list[int] = []
    pos = 0
    while pos < len(data):
        length, shift, cursor = 0, 0, pos + 1
        while True:
            byte = data[cursor]
            length |= (byte & 0x7F) << shift
            shift += 7
            cursor += 1
            if not byte & 0x80:
                break
        if data[pos] >> 4 == 3:
            flags.append(data[pos])
        pos = cursor + length
    return flags


def test_paho_drops_a_message_on_its_puback_only_and_resends_the_rest_to_a_new_session() -> None:
    """What edged.uplink.delivery relies on: a PUBACK read removes the message from
    ``_out_messages`` and marks its info published; a reconnect to a broker that has no session
    (CONNACK session present = 0) keeps every other message and re-sends it with DUP."""
    client = LoopClient(client_id="g:o:t:i", reconnect_on_failure=False, clean_session=False)
    client.connect_async("broker.invalid", 1883, 30)
    pairs = [socket.socketpair(), socket.socketpair()]
    try:
        for _, broker_end in pairs:
            broker_end.settimeout(2)
        (ours, broker_end), (ours_again, broker_again) = pairs
        client.hand_over(ours)
        client.reconnect()
        client.loop_write()
        broker_end.recv(1024)  # CONNECT
        broker_end.sendall(b"\x20\x02\x00\x00")  # CONNACK, no session
        client.loop_read()
        infos = [client.publish("a/b", str(index).encode(), 1) for index in range(3)]
        client.loop_write()
        assert _publish_flags(broker_end.recv(4096)) == [0x32, 0x32, 0x32]

        broker_end.sendall(b"\x40\x02" + infos[1].mid.to_bytes(2, "big"))  # PUBACK, middle one
        client.loop_read()
        assert list(client.awaiting_ack) == [infos[0].mid, infos[2].mid]
        assert [acknowledged(info) for info in infos] == [False, True, False]

        client.force_close()
        client.hand_over(ours_again)
        client.reconnect()
        client.loop_write()
        broker_again.recv(1024)  # CONNECT
        broker_again.sendall(b"\x20\x02\x00\x00")  # CONNACK: the broker lost the session
        client.loop_read()
        client.loop_write()
        assert list(client.awaiting_ack) == [infos[0].mid, infos[2].mid], "kept"
        assert _publish_flags(broker_again.recv(4096)) == [0x3A, 0x3A], "re-sent with DUP"
        assert not acknowledged(infos[0])
    finally:
        client.force_close()
        for pair in pairs:
            for end in pair:
                end.close()
