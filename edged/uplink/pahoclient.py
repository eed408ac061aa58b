"""The paho client, adapted to be driven from one asyncio loop. Every use of paho internals is here.

paho's ``reconnect()`` opens the socket itself, blocking (DNS, TCP, TLS). We open it in a thread
beforehand (:mod:`edged.uplink.connect`) and hand it over through ``_create_socket``, so
``reconnect()`` only queues CONNECT and every paho call and callback stays on the loop thread.

Internals used (present in paho-mqtt 2.1 and 2.2; ``tests/unit/uplink/test_paho_canary.py``
checks them against the installed paho):

* ``Client._create_socket()``: called by ``reconnect()`` to get the connected socket.
* ``Client._out_messages``: QoS > 0 messages paho keeps until their PUBACK (re-sent with DUP
  after a reconnect). Its length is the number awaiting PUBACK: reading it after each read
  event is the cheapest way to learn of PUBACKs (an ``on_publish`` callback would also run
  for every QoS 0 message and cost more CPU than the rest of the publish path). paho removes
  a message from it only when its PUBACK (or PUBCOMP) arrives, inside ``loop_read()``, and in
  ``drop_out_messages()`` (2.2; edged never calls it). It keeps the messages when the broker
  reports no session after a reconnect, and re-sends them all.
* ``MQTTMessageInfo._published``: set when paho took the message out of ``_out_messages`` on
  its PUBACK; read through :func:`acknowledged` (the public ``is_published()`` raises for a
  message handed over while disconnected).
* ``Client._sock_close()``: closes the socket and fires ``on_socket_close``, for shutdown.
  Overridden to drop the read buffer with the socket.

Two overrides make the publish path cheaper (handling PUBACKs was ~40% of paho's share of the
loop thread):

* ``Client._sock_recv(bufsize)``: paho reads each packet's fixed header one byte at a time, so
  a 4-byte PUBACK cost three ``recv()`` calls. :class:`LoopClient` reads up to 64 KiB at once
  and serves paho's small reads from that buffer. Only when the buffer is empty does it call
  paho's own ``_sock_recv``, so EOF, ``BlockingIOError``, TLS want-read/want-write and socket
  errors reach paho exactly as before. Bytes may now wait in the buffer while the socket is no
  longer readable: whoever drives ``loop_read()`` must call it again while :meth:`buffered`
  (:class:`edged.uplink.driver.LoopDriver` does). Reconnects start with an empty buffer.
* ``Client._handle_pubackcomp(cmd)``: for a 2-byte PUBACK (MQTT 3.1/3.1.1) it does what paho
  does (take the message out of ``_out_messages``, ``MQTTMessageInfo._set_as_published()``,
  decrement ``_inflight_messages``) without building the ``ReasonCode`` and ``Properties`` that
  only ``on_publish`` would see, and without paho's debug log line for it. It takes this path
  only while ``on_publish`` is unset and paho's own in-flight limit is off
  (``max_inflight_messages == 0``: nothing to release), as :mod:`edged.uplink.session` sets
  them for MQTT 3.1.1; otherwise, and for MQTT 5, PUBCOMP or any other length, paho's own
  method runs. It reads ``_in_packet["packet"]`` and ``_protocol``.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from edged.uplink.connect import Stream
from edged.uplink.settings import UplinkSettings

READ_SIZE = 65536
"""Bytes asked of the socket per ``recv()`` (paho itself asks for one byte of a header)."""

_MQTTV5 = MQTTProtocolVersion.MQTTv5
_OK = MQTTErrorCode.MQTT_ERR_SUCCESS


def acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """True once the broker acknowledged the QoS > 0 message ``info`` describes."""
    return bool(info._published)


class LoopClient(mqtt.Client):
    """A paho ``Client`` whose socket is opened by the caller (see module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, **kwargs)
        self._handover: Stream | None = None
        # Bytes read from the socket that paho has not consumed yet start at _read_pos (an
        # empty _read_buf means none).
        self._read_buf = b""
        self._read_pos = 0

    def hand_over(self, sock: Stream) -> None:
        """The next ``reconnect()`` uses ``sock`` (connected, TLS handshake and WebSocket
        upgrade done)."""
        self._handover = sock

    def buffered(self) -> bool:
        """True while bytes already read from the socket wait for ``loop_read()``."""
        return bool(self._read_buf)

    @property
    def fast_puback(self) -> bool:
        """True while a 2-byte PUBACK would take the cheap path (see the module docstring)."""
        return (
            self._protocol != _MQTTV5
            and self.on_publish is None
            and self.max_inflight_messages == 0
        )

    def _create_socket(self) -> Any:
        sock, self._handover = self._handover, None
        if sock is None:
            # paho reconnects on its own only when reconnect_on_failure is True; we pass False.
            raise ConnectionError("no connected socket was handed over to paho")
        self._read_buf = b""
        return sock

    def _sock_close(self) -> None:
        self._read_buf = b""
        super()._sock_close()

    def _sock_recv(self, bufsize: int) -> bytes:
        buf, pos = self._read_buf, self._read_pos
        if not buf:
            # paho's own recv: raises, or returns b"" at EOF, exactly as paho expects.
            buf, pos = super()._sock_recv(READ_SIZE), 0
        end = pos + bufsize
        if end >= len(buf):
            self._read_buf = b""  # all served (and 64 KiB not kept alive)
            return buf[pos:] if pos else buf
        self._read_buf, self._read_pos = buf, end
        return buf[pos:end]

    def _handle_pubackcomp(self, cmd: Any) -> MQTTErrorCode:
        packet = self._in_packet["packet"]
        if cmd == "PUBACK" and len(packet) == 2 and self.fast_puback:
            mid = (packet[0] << 8) | packet[1]
            msg = self._out_messages.pop(mid, None)  # paho's lock is moot: one thread
            if msg is not None:
                msg.info._set_as_published()
                if msg.qos > 0:
                    self._inflight_messages -= 1
            return _OK
        result: MQTTErrorCode = super()._handle_pubackcomp(cmd)
        return result

    @property
    def awaiting_ack(self) -> collections.OrderedDict[int, mqtt.MQTTMessage]:
        """The live mapping of QoS > 0 messages paho holds until PUBACK (do not modify)."""
        return self._out_messages

    def force_close(self) -> None:
        """Close the socket now, without DISCONNECT (fires ``on_socket_close``)."""
        self._sock_close()


_MAX_SESSION_EXPIRY = 0xFFFFFFFF


def new_client(
    settings: UplinkSettings,
    *,
    on_connect: Callable[..., None],
    on_disconnect: Callable[..., None],
    on_message: Callable[..., None],
    on_subscribe: Callable[..., None],
    on_publish: Callable[..., None],
) -> LoopClient:
    """A :class:`LoopClient` for ``settings`` with the session's callbacks; no I/O yet."""
    s = settings
    v5 = s.mqtt_version == "5"
    kwargs: dict[str, Any] = {"client_id": s.client_id, "reconnect_on_failure": False}
    if v5:
        kwargs["protocol"] = MQTTProtocolVersion.MQTTv5
    else:
        kwargs["protocol"] = MQTTProtocolVersion.MQTTv311
        kwargs["clean_session"] = not s.persistent_session
    client = LoopClient(**kwargs)
    client.username_pw_set(s.username, s.password.reveal())
    # Our window (max_inflight) is the bound. paho's own limit is off: while it is set, paho
    # walks every unacknowledged message on each PUBACK (~26 us each at a window of 100).
    client.max_inflight_messages_set(0)
    client.max_queued_messages_set(0)
    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    if v5:
        # Only MQTT 5 PUBACKs carry a reason worth reading; for QoS 0 this callback costs CPU.
        client.on_publish = on_publish
    keepalive = round(s.keepalive)
    if v5:
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        if s.persistent_session:
            properties.SessionExpiryInterval = min(_MAX_SESSION_EXPIRY, round(s.session_expiry))
        client.connect_async(
            s.host, s.port, keepalive, clean_start=not s.persistent_session, properties=properties
        )
    else:
        client.connect_async(s.host, s.port, keepalive)  # only records the target; no I/O
    return client
