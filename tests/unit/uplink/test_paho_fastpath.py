"""LoopClient's buffered reads and 2-byte PUBACK path, against the installed paho.

No broker: the handed-over socket is one end of a loopback TCP connection and the test writes
the broker's bytes into the other end. The PUBACK path is checked by feeding the same bytes to
LoopClient and to a client that runs paho's own code, then comparing every plain value paho keeps.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
from collections.abc import Callable, Iterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from edged.uplink.driver import _DRAIN_ROUNDS, LoopDriver
from edged.uplink.pahoclient import READ_SIZE, LoopClient, acknowledged

# The real paho is the counterpart: "integration" makes CI run this on the oldest paho too.
pytestmark = pytest.mark.integration

CONNACK = b"\x20\x02\x00\x00"
V5_CONNACK = b"\x20\x03\x00\x00\x00"


def puback(mid: int) -> bytes:
    return b"\x40\x02" + mid.to_bytes(2, "big")


def publish(topic: str, payload: bytes) -> bytes:
    """A QoS 0 PUBLISH from the broker (remaining length in as many bytes as it needs)."""
    body = len(topic).to_bytes(2, "big") + topic.encode() + payload
    length, header = len(body), bytearray()
    while True:
        byte, length = length % 128, length // 128
        header.append(byte | (0x80 if length else 0))
        if not length:
            break
    return b"\x30" + bytes(header) + body


class PahoOwn(mqtt.Client):
    """paho's own code, with only the socket handed over (the baseline LoopClient must match)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, **kwargs)
        self.handed: socket.socket | None = None

    def _create_socket(self) -> Any:
        return self.handed


@pytest.fixture
def pairs() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        # TCP over loopback, as in the daemon (the driver sets TCP options on it).
        with socket.create_server(("127.0.0.1", 0)) as server:
            ours = socket.create_connection(server.getsockname())
            broker_end, _ = server.accept()
        broker_end.settimeout(2)
        made.extend((ours, broker_end))
        return ours, broker_end

    yield make
    for sock in made:
        sock.close()


def connect(client: mqtt.Client, ours: socket.socket, broker_end: socket.socket) -> None:
    if isinstance(client, LoopClient):
        client.hand_over(ours)
    else:
        assert isinstance(client, PahoOwn)
        client.handed = ours
    assert client.reconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS
    client.loop_write()
    assert broker_end.recv(1024)[0] == 0x10, "CONNECT"
    v5 = client._protocol == MQTTProtocolVersion.MQTTv5
    broker_end.sendall(V5_CONNACK if v5 else CONNACK)
    read_all(client)


def read_all(client: mqtt.Client) -> None:
    """What LoopDriver does on a read event."""
    client.loop_read()
    while isinstance(client, LoopClient) and client.socket() is not None and client.buffered():
        client.loop_read()


def new_client(cls: type[mqtt.Client], max_inflight: int = 0) -> Any:
    client = cls(client_id="g:o:t:i", reconnect_on_failure=False, clean_session=False)
    client.max_inflight_messages_set(max_inflight)  # 0 as edged.uplink.session sets it
    client.max_queued_messages_set(0)
    client.connect_async("broker.invalid", 1883, 30)
    return client


_MOVING = {"_last_bytes_received", "_last_msg_in", "_last_msg_out", "_ping_t"}
_OURS = {"_handover", "_read_buf", "_read_pos", "handed"}


def state(client: mqtt.Client) -> dict[str, Any]:
    """Every plain value paho keeps on the client (not locks, sockets or timestamps)."""
    seen: dict[str, Any] = {}
    for name, value in vars(client).items():
        if name in _MOVING or name in _OURS:
            continue
        if isinstance(value, (int, str, bytes, bool, float, type(None))):
            seen[name] = value
        elif isinstance(value, collections.OrderedDict):
            seen[name] = [(mid, acknowledged(msg.info)) for mid, msg in value.items()]
        elif isinstance(value, (dict, list, collections.deque)):
            seen[name] = repr(value) if name == "_in_packet" else len(value)
    return seen


@pytest.fixture
def paho_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records each call of paho's own ``_handle_pubackcomp``."""
    calls: list[str] = []
    original = mqtt.Client._handle_pubackcomp

    def spy(self: mqtt.Client, cmd: Any) -> MQTTErrorCode:
        calls.append(cmd)
        result: MQTTErrorCode = original(self, cmd)
        return result

    monkeypatch.setattr(mqtt.Client, "_handle_pubackcomp", spy)
    return calls


# -- the 2-byte PUBACK path ----------------------------------------------------------------------


def test_a_2_byte_puback_leaves_paho_exactly_as_paho_itself_would(
    pairs: Callable[[], tuple[socket.socket, socket.socket]], paho_calls: list[str]
) -> None:
    ours, theirs = new_client(LoopClient), new_client(PahoOwn)
    assert ours.fast_puback
    ends: list[socket.socket] = []
    for client in (ours, theirs):
        mine, broker_end = pairs()
        connect(client, mine, broker_end)
        infos = [client.publish("a/b", str(n).encode(), 1) for n in range(4)]
        client.publish("a/b", b"q0", 0)
        client.loop_write()
        broker_end.recv(4096)
        mids = [info.mid for info in infos]
        # out of order, a duplicate, and one for a packet id paho does not hold
        broker_end.sendall(puback(mids[1]) + puback(mids[0]) + puback(mids[1]) + puback(999))
        read_all(client)
        assert [acknowledged(info) for info in infos] == [True, True, False, False]
        ends.append(broker_end)
    assert state(ours) == state(theirs)
    assert ours._inflight_messages == 2
    assert paho_calls == ["PUBACK"] * 4, "only the paho client ran paho's own method"

    # Reconnect to a broker without the session: both re-send the same two, and agree again.
    for client, old_end in zip((ours, theirs), ends, strict=True):
        client._sock_close()
        old_end.close()
        mine, broker_end = pairs()
        connect(client, mine, broker_end)
        client.loop_write()
        broker_end.recv(4096)
        broker_end.sendall(puback(next(iter(client._out_messages))))
        read_all(client)
    assert state(ours) == state(theirs)
    assert len(ours.awaiting_ack) == 1


def test_with_on_publish_or_pahos_inflight_limit_paho_handles_the_puback(
    pairs: Callable[[], tuple[socket.socket, socket.socket]], paho_calls: list[str]
) -> None:
    client = new_client(LoopClient)
    published: list[int] = []
    client.on_publish = lambda c, u, mid, reason, props: published.append(mid)
    assert not client.fast_puback
    mine, broker_end = pairs()
    connect(client, mine, broker_end)
    info = client.publish("a/b", b"x", 1)
    client.loop_write()
    broker_end.recv(4096)
    broker_end.sendall(puback(info.mid))
    read_all(client)
    assert published == [info.mid]
    assert acknowledged(info)
    assert paho_calls == ["PUBACK"]

    limited = new_client(LoopClient, max_inflight=1)
    assert not limited.fast_puback
    mine, broker_end = pairs()
    connect(limited, mine, broker_end)
    first, second = limited.publish("a/b", b"1", 1), limited.publish("a/b", b"2", 1)
    limited.loop_write()
    broker_end.recv(4096)
    broker_end.sendall(puback(first.mid))
    read_all(limited)
    limited.loop_write()
    assert b"2" in broker_end.recv(4096), "paho released the queued message on the PUBACK"
    assert acknowledged(first)
    assert not acknowledged(second)


def test_mqtt5_pubacks_with_a_reason_take_pahos_path(
    pairs: Callable[[], tuple[socket.socket, socket.socket]], paho_calls: list[str]
) -> None:
    client = LoopClient(
        client_id="g:o:t:i", reconnect_on_failure=False, protocol=MQTTProtocolVersion.MQTTv5
    )
    client.max_inflight_messages_set(0)
    client.connect_async("broker.invalid", 1883, 30)
    assert not client.fast_puback
    reasons: list[tuple[int, int]] = []
    client.on_publish = lambda c, u, mid, reason, props: reasons.append((mid, reason.value))
    mine, broker_end = pairs()
    connect(client, mine, broker_end)
    ok, denied = client.publish("a/b", b"1", 1), client.publish("a/b", b"2", 1)
    client.loop_write()
    broker_end.recv(4096)
    broker_end.sendall(puback(ok.mid) + b"\x40\x03" + denied.mid.to_bytes(2, "big") + b"\x87")
    read_all(client)
    assert reasons == [(ok.mid, 0), (denied.mid, 0x87)]
    assert paho_calls == ["PUBACK", "PUBACK"]


def test_a_3_byte_puback_at_mqtt311_is_still_a_protocol_error(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    client = new_client(LoopClient)
    mine, broker_end = pairs()
    connect(client, mine, broker_end)
    info = client.publish("a/b", b"x", 1)
    client.loop_write()
    broker_end.recv(4096)
    broker_end.sendall(b"\x40\x03" + info.mid.to_bytes(2, "big") + b"\x00")
    read_all(client)
    assert client.socket() is None, "paho dropped the connection"
    assert not acknowledged(info)
    assert list(client.awaiting_ack) == [info.mid]


# -- buffered reads ------------------------------------------------------------------------------


def test_small_reads_are_served_from_one_recv_until_eof(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    client = new_client(LoopClient)
    mine, broker_end = pairs()
    connect(client, mine, broker_end)
    assert not client.buffered()
    with pytest.raises(BlockingIOError):
        client._sock_recv(1)  # nothing there: paho's own exception, so MQTT_ERR_AGAIN
    broker_end.sendall(b"abcdef")
    assert client._sock_recv(1) == b"a"
    assert client.buffered()
    broker_end.sendall(b"gh")  # not read until the buffer is used up
    assert client._sock_recv(2) == b"bc"
    assert client._sock_recv(10) == b"def", "a short read, as recv() may give"
    assert not client.buffered()
    assert client._sock_recv(10) == b"gh"
    broker_end.shutdown(socket.SHUT_WR)
    assert client._sock_recv(1) == b"", "EOF reaches paho as EOF"


def test_a_new_connection_never_sees_bytes_left_from_the_old_one(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    client = new_client(LoopClient)
    mine, broker_end = pairs()
    connect(client, mine, broker_end)
    broker_end.sendall(b"stale")
    assert client._sock_recv(1) == b"s"
    client.force_close()
    assert not client.buffered()
    with pytest.raises(ConnectionError):
        client._sock_recv(1)  # paho's own error without a socket
    mine, broker_end = pairs()
    connect(client, mine, broker_end)
    broker_end.sendall(b"fresh")
    assert client._sock_recv(5) == b"fresh"


@pytest.mark.parametrize("cut", range(1, 12))
def test_packets_split_anywhere_across_reads_are_all_handled(
    pairs: Callable[[], tuple[socket.socket, socket.socket]], cut: int
) -> None:
    client = new_client(LoopClient)
    received: list[bytes] = []
    client.on_message = lambda c, u, message: received.append(message.payload)
    mine, broker_end = pairs()
    connect(client, mine, broker_end)
    infos = [client.publish("a/b", str(n).encode(), 1) for n in range(2)]
    client.loop_write()
    broker_end.recv(4096)
    data = puback(infos[0].mid) + publish("c/d", b"cmd") + puback(infos[1].mid)
    broker_end.sendall(data[:cut])
    read_all(client)
    assert not client.buffered()
    broker_end.sendall(data[cut:])
    read_all(client)
    assert [acknowledged(info) for info in infos] == [True, True]
    assert received == [b"cmd"]
    assert client.socket() is not None


def test_a_packet_larger_than_one_read_arrives_whole(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    client = new_client(LoopClient)
    received: list[bytes] = []
    client.on_message = lambda c, u, message: received.append(message.payload)
    mine, broker_end = pairs()
    connect(client, mine, broker_end)
    info = client.publish("a/b", b"x", 1)
    client.loop_write()
    broker_end.recv(4096)
    big = bytes(range(256)) * (2 * READ_SIZE // 256 + 3)
    data = publish("c/d", big) + puback(info.mid) + publish("c/d", b"after")
    broker_end.setblocking(False)
    while data:  # the socket buffers less than this: feed it as paho drains it
        with contextlib.suppress(BlockingIOError):
            data = data[broker_end.send(data) :]
        read_all(client)
    assert received == [big, b"after"]
    assert acknowledged(info)


# -- the driver: bytes the socket will not signal again ------------------------------------------


async def test_the_driver_hands_every_buffered_packet_to_paho_a_loop_turn_at_a_time(
    pairs: Callable[[], tuple[socket.socket, socket.socket]],
) -> None:
    """With nothing in flight paho reads one packet per ``loop_read()``; the rest sits in the
    buffer while the socket stays quiet. The driver keeps reading, ``_DRAIN_ROUNDS`` more per
    read event, then yields the loop and comes back."""
    loop = asyncio.get_running_loop()
    client = new_client(LoopClient)
    count = 3 * _DRAIN_ROUNDS
    received: list[bytes] = []
    everything = asyncio.Event()

    def on_message(c: Any, u: Any, message: mqtt.MQTTMessage) -> None:
        received.append(bytes(message.payload))
        if len(received) == count:
            everything.set()

    client.on_message = on_message
    seen_after_read: list[int] = []
    failures: list[str] = []
    driver = LoopDriver(
        client,
        after_read=lambda: seen_after_read.append(len(received)),
        drained=lambda: None,
        failed=failures.append,
        force_close=client.force_close,
    )
    driver.bind(loop)
    mine, broker_end = pairs()
    broker_end.setblocking(False)
    client.hand_over(mine)
    client.reconnect()
    assert (await loop.sock_recv(broker_end, 1024))[0] == 0x10, "CONNECT"
    data = CONNACK + b"".join(publish("c/d", str(n).encode()) for n in range(count))
    assert len(data) < READ_SIZE
    await loop.sock_sendall(broker_end, data)
    await asyncio.wait_for(everything.wait(), 5)  # never, if the driver stopped reading
    assert received == [str(n).encode() for n in range(count)]
    per_event = [b - a for a, b in zip([0, *seen_after_read], seen_after_read, strict=False)]
    assert max(per_event) <= 1 + _DRAIN_ROUNDS, "each read event handles a bounded number"
    assert failures == []
    client.force_close()
