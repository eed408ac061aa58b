"""Canary: the paho internals edged.uplink.pahoclient relies on, checked on the installed paho.

No broker: the handed-over socket is one end of a socketpair, so the CONNECT paho writes can
be read back from the other end.
"""

from __future__ import annotations

import collections
import inspect
import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import MQTTErrorCode, MQTTProtocolVersion

from edged.uplink import Uplink
from edged.uplink.pahoclient import LoopClient, acknowledged
from tests.support.uplink_settings import settings_for_port

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


def _parameters(function: Callable[..., Any]) -> list[str]:
    return list(inspect.signature(function).parameters)


def test_the_internals_of_loopclients_read_and_puback_paths_are_where_it_expects_them() -> None:
    """LoopClient overrides ``_sock_recv`` and ``_handle_pubackcomp`` and repeats part of what
    paho does on a PUBACK (see edged/uplink/pahoclient.py). A paho that moved any of this must
    fail here, not lose track of deliveries; test_paho_fastpath.py compares the behaviour."""
    assert _parameters(mqtt.Client._sock_recv) == ["self", "bufsize"]
    assert _parameters(mqtt.Client._handle_pubackcomp) == ["self", "cmd"]
    assert _parameters(mqtt.Client._sock_close) == ["self"]
    assert _parameters(mqtt.Client._create_socket) == ["self"]
    assert _parameters(mqtt.MQTTMessageInfo._set_as_published) == ["self"]
    # paho reads only through _sock_recv and hands every PUBACK to _handle_pubackcomp
    reads = inspect.getsource(mqtt.Client._packet_read)
    assert "self._sock_recv(" in reads
    assert ".recv(" not in reads.replace("self._sock_recv(", "")
    assert 'self._handle_pubackcomp("PUBACK")' in inspect.getsource(mqtt.Client._packet_handle)
    # ... and on a PUBACK for a message it holds does what LoopClient repeats
    on_publish = inspect.getsource(mqtt.Client._do_on_publish)
    for step in (
        "self._out_messages.pop(mid)",
        "msg.info._set_as_published()",
        "self._inflight_messages -= 1",
        "if self._max_inflight_messages > 0:",
    ):
        assert step in on_publish, step

    client = LoopClient(client_id="g:o:t:i", reconnect_on_failure=False)
    client.max_inflight_messages_set(0)
    client.connect_async("broker.invalid", 1883, 30)
    assert {"command", "packet", "remaining_length"} <= set(client._in_packet)
    assert client._in_packet["packet"] == b""
    assert client._protocol == MQTTProtocolVersion.MQTTv311
    assert client._inflight_messages == 0
    assert isinstance(client._out_messages, collections.OrderedDict)
    assert client.on_publish is None
    assert client.max_inflight_messages == 0
    assert client.fast_puback


def test_the_uplink_takes_the_cheap_puback_path_at_mqtt311_only() -> None:
    """edged.uplink.session leaves on_publish unset and turns paho's in-flight limit off for
    MQTT 3.1.1 (what the cheap path needs); a change there would quietly cost CPU."""
    settings = replace(settings_for_port(1), client_id="g:o:t:i")
    plain = Uplink(settings, lambda message: None)
    assert plain._client.fast_puback
    v5 = Uplink(replace(settings, mqtt_version="5"), lambda message: None)
    assert not v5._client.fast_puback
