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

from edged.uplink.pahoclient import LoopClient

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
