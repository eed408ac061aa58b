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
"""

from __future__ import annotations

import collections
import socket
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion


def acknowledged(info: mqtt.MQTTMessageInfo) -> bool:
    """True once the broker acknowledged the QoS > 0 message ``info`` describes."""
    return bool(info._published)


class LoopClient(mqtt.Client):
    """A paho ``Client`` whose socket is opened by the caller (see module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(CallbackAPIVersion.VERSION2, **kwargs)
        self._handover: socket.socket | None = None

    def hand_over(self, sock: socket.socket) -> None:
        """The next ``reconnect()`` uses ``sock`` (connected, TLS handshake done)."""
        self._handover = sock

    def _create_socket(self) -> Any:
        sock, self._handover = self._handover, None
        if sock is None:
            # paho reconnects on its own only when reconnect_on_failure is True; we pass False.
            raise ConnectionError("no connected socket was handed over to paho")
        return sock

    @property
    def awaiting_ack(self) -> collections.OrderedDict[int, mqtt.MQTTMessage]:
        """The live mapping of QoS > 0 messages paho holds until PUBACK (do not modify)."""
        return self._out_messages

    def force_close(self) -> None:
        """Close the socket now, without DISCONNECT (fires ``on_socket_close``)."""
        self._sock_close()
