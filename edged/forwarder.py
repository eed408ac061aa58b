"""The forwarder: takes the outbox's messages in order and hands them to the uplink.

One task runs :meth:`Forwarder.run`. For each message the outbox offers (it skips devices the
registrar holds), the forwarder publishes it and gives the outbox the delivery future, passed
through the :class:`Gate` first: the registrar returns a future of its own for a device whose
registration is pending (the message is then deleted only once the registration is
confirmed) and the uplink's future unchanged for every other device. The uplink's futures settle
in the order the messages were handed over, so the outbox takes those up in batches
(:meth:`Outbox.sent_in_order`); a gate's own future gets a callback of its own
(:meth:`Outbox.sent`).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Protocol

from edged.errors import PayloadTooLarge
from edged.outbox import Outbox
from edged.problems import ProblemLog
from edged.text import safe
from edged.uplink import UplinkClosedError

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """The part of the uplink the forwarder needs."""

    async def publish(self, topic: str, payload: bytes, qos: int) -> asyncio.Future[None]:
        """Hand one message to the MQTT session (waits while it cannot take more); the future
        settles when the broker acknowledged it (see :meth:`edged.uplink.Uplink.publish`).

        The futures should settle in the order the messages were handed over (one settled
        before an older one is taken up by the outbox only once the older one has settled)."""


class Gate(Protocol):
    """What the forwarder asks of the registrar."""

    def track(self, device: str, delivery: asyncio.Future[None]) -> asyncio.Future[None]:
        """The future the outbox should wait for, for a message of ``device`` just handed over."""


class OpenGate:
    """No registration gating: every delivery is final as the uplink reports it."""

    def track(self, device: str, delivery: asyncio.Future[None]) -> asyncio.Future[None]:
        """Return ``delivery`` unchanged."""
        return delivery


class Forwarder:
    """Hands the outbox's messages to the uplink (see the module docstring)."""

    def __init__(self, outbox: Outbox, counters: Counter[str], gate: Gate | None = None) -> None:
        self.outbox = outbox
        self.counters = counters
        self.gate: Gate = gate or OpenGate()
        self._problems = ProblemLog(log, "forwarder", quiet=60.0)

    async def run(self, publisher: Publisher) -> None:
        """Forward until cancelled.

        The outbox deletes each message once its (gated) delivery succeeded. A message the
        uplink refuses for an unexpected reason (a bug, never a network problem: the uplink
        waits those out) is discarded, counted and logged once per kind of error, so one bad
        message cannot stop the forwarder or block those behind it.
        """
        outbox, gate, counters = self.outbox, self.gate, self.counters
        while True:
            entry = outbox.take_nowait() or await outbox.next()
            message = entry.message
            try:
                delivery = await publisher.publish(message.topic, message.payload, message.qos)
            except asyncio.CancelledError:
                outbox.requeue(entry)
                raise
            except UplinkClosedError:
                outbox.requeue(entry)  # stays stored: sent at the next start
                raise
            except PayloadTooLarge:
                counters["oversize_refused"] += 1
                outbox.discard(entry)
            except Exception as exc:  # noqa: BLE001 - see the docstring
                counters["publish_errors"] += 1
                outbox.discard(entry)
                self._problems.fail(
                    type(exc).__name__,
                    f"dropped a message on {safe(message.topic)}: {safe(exc)!s} "
                    "(further ones counted in the status event as publish_errors)",
                    logging.ERROR,
                )
            else:
                tracked = gate.track(entry.device, delivery)
                if tracked is delivery:  # the uplink's own: settles in order
                    outbox.sent_in_order(entry, delivery)
                else:
                    outbox.sent(entry, tracked)
                counters["forwarded"] += 1
