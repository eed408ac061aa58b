"""Delivery futures: how each QoS 1 message handed to paho ends, reported by identity.

:meth:`edged.uplink.Uplink.publish` returns one future per message. For QoS 1 this module
keeps them by packet id (paho's ``mid``) in the order they were handed over, next to paho's
own ``_out_messages`` (the messages it holds until their PUBACK and re-sends after a
reconnect). paho removes a message from there when its PUBACK arrives; so after each read
event, :meth:`Deliveries.settle` resolves every future whose message paho no longer holds.
Normally that means taking futures from the front while the front one is gone (the broker
acknowledges in order); only when the counts still disagree does it scan them all.

How a future ends:

* result ``None``: the broker acknowledged the message (PUBACK), possibly after paho re-sent it;
* :class:`~edged.errors.PublishRejected`: the PUBACK carried a failure reason (MQTT 5);
* :class:`DeliveryLost`: paho let go of the message without a PUBACK (paho 2.1 and 2.2 only do
  that in ``drop_out_messages()``, which edged never calls): not known to be delivered;
* :class:`UplinkClosedError`: the uplink closed before the PUBACK (:meth:`Deliveries.abandon`).

While neither happened they stay pending: a frozen broker, a reconnect, or a ``run()`` cancelled
without ``close()`` (paho keeps the messages; the next ``run()`` re-sends them) only delay them.

Exceptions are marked as retrieved when set, so a caller that ignores its futures (the uplink
already logs rejections and what was unacknowledged at shutdown) gets no asyncio complaints.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from paho.mqtt.client import MQTTMessageInfo

from edged.errors import PublishRejected
from edged.uplink.pahoclient import acknowledged

log = logging.getLogger("edged.uplink")


class UplinkClosedError(RuntimeError):
    """:meth:`Uplink.publish` after :meth:`Uplink.close` began, or the delivery of a message
    that was still unacknowledged when the uplink closed (publish it again after a restart)."""


class DeliveryLost(RuntimeError):
    """The session let go of a QoS 1 message without a PUBACK: it may not have arrived.

    Publish it again. (paho-mqtt 2.1 and 2.2 never do this in the way edged drives them.)
    """


class Deliveries:
    """The unsettled delivery futures of QoS 1 messages, by packet id, oldest first.

    ``held`` is paho's live mapping of the messages it holds until PUBACK. Every QoS 1
    message paho takes must be :meth:`track`-ed, and :meth:`settle` must run after every
    ``loop_read()`` (the only call in which paho lets go of messages).
    """

    def __init__(self, held: Mapping[int, Any]) -> None:
        self._held = held
        self._pending: dict[int, tuple[asyncio.Future[None], MQTTMessageInfo]] = {}
        self._refusals: dict[int, tuple[int, str]] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def track(self, info: MQTTMessageInfo, delivery: asyncio.Future[None]) -> None:
        """Settle ``delivery`` when paho lets go of the message ``info`` describes."""
        pending = self._pending
        mid = info.mid
        if mid in pending:
            # paho reused the id, so the earlier message is gone: settle it first, or the new
            # one would take its place in the order.
            self._settle(mid, pending.pop(mid))
        pending[mid] = (delivery, info)

    def refused(self, mid: int, reason_code: int, reason_name: str) -> None:
        """The PUBACK for ``mid`` carried a failure reason; its future gets PublishRejected."""
        if mid in self._pending:
            self._refusals[mid] = (reason_code, reason_name)

    def settle(self) -> None:
        """Resolve the futures of the messages paho no longer holds, in the order handed over."""
        pending = self._pending
        held = self._held
        while len(pending) > len(held):
            mid = next(iter(pending))
            if mid in held:  # acknowledged out of order: find the others
                for gone in [m for m in pending if m not in held]:
                    self._settle(gone, pending.pop(gone))
                return
            self._settle(mid, pending.pop(mid))

    def abandon(self) -> int:
        """Fail every unsettled future with :class:`UplinkClosedError`; return how many."""
        self.settle()
        pending, self._pending = self._pending, {}
        self._refusals.clear()
        for delivery, _info in pending.values():
            _fail(
                delivery,
                UplinkClosedError(
                    "the uplink closed before the broker acknowledged the message; publish it"
                    " again after the restart"
                ),
            )
        return len(pending)

    def _settle(self, mid: int, entry: tuple[asyncio.Future[None], MQTTMessageInfo]) -> None:
        delivery, info = entry
        refusal = self._refusals.pop(mid, None) if self._refusals else None
        if delivery.done():  # the caller cancelled it
            return
        if refusal is not None:
            _fail(delivery, PublishRejected(*refusal))
        elif acknowledged(info):
            delivery.set_result(None)
        else:
            log.warning(
                "paho dropped an unacknowledged QoS 1 message (packet id %d) without a PUBACK;"
                " its sender was told to publish it again",
                mid,
            )
            _fail(delivery, DeliveryLost("the MQTT session dropped the message before its PUBACK"))


def _fail(delivery: asyncio.Future[None], error: BaseException) -> None:
    if not delivery.done():
        delivery.set_exception(error)
        delivery.exception()  # retrieved: an ignored future is not logged as an error
