"""The emulator's MQTT connection: the application client's connection, set up as the emulator
needs it (see :mod:`edged.appclient.connection` for the network thread and reconnecting).

The emulator connects with MQTT v5, subscribed to everything with no-local, and resumes its
session across reconnects, so nothing a gateway publishes while the broker restarts is missed.
Its errors are :class:`EmulatorError`.
"""

from __future__ import annotations

import logging
import threading

from paho.mqtt.subscribeoptions import SubscribeOptions

from edged.appclient.connection import AppClientError, Deliver
from edged.appclient.connection import Connection as AppConnection
from edged.appclient.settings import ConnectionSettings

log = logging.getLogger("edged.emulator")

SUBSCRIPTION = "#"
"""Everything: :func:`rules.check_publication` tells gateway publications from platform ones."""

SESSION_EXPIRY = 300
"""Seconds the broker keeps the emulator's session (and queues its messages) while it reconnects."""


class EmulatorError(AppClientError):
    """The emulator could not connect, subscribe or publish."""


def _subscribe_options() -> SubscribeOptions:
    # QoS 2 so a gateway's QoS 2 publish arrives at QoS 2 and can be flagged (a subscription
    # caps the delivered QoS). Retain-as-published shows the retain flag the gateway set.
    # No-local drops the emulator's own commands, notifies and DM messages at the broker.
    # Retained messages already stored are not replayed: they are not new publications.
    return SubscribeOptions(
        qos=2,
        noLocal=True,
        retainAsPublished=True,
        retainHandling=SubscribeOptions.RETAIN_DO_NOT_SEND,
    )


class Connection(AppConnection):
    """An MQTT v5 client subscribed to everything, that reconnects and resumes its session.

    Args:
        host: Broker host.
        port: Broker port.
        client_id: The MQTT client id.
        username: User name.
        password: Password (token). Never logged.
        tls_ca_file: CA to verify the broker with, or ``None`` for the system trust store.
        tls: Use TLS.
        keepalive: MQTT keep-alive in seconds.
        connect_timeout: Seconds :meth:`start` waits for CONNACK and SUBACK.
        cond: The emulator's condition variable; it guards the connection state too.
        deliver: Called with every message received.
    """

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        username: str,
        password: str,
        tls_ca_file: str | None,
        tls: bool,
        keepalive: int,
        connect_timeout: float,
        cond: threading.Condition,
        deliver: Deliver,
    ) -> None:
        settings = ConnectionSettings(
            host,
            port,
            tls=tls,
            ca_file=tls_ca_file,
            keepalive=keepalive,
            connect_timeout=connect_timeout,
        )
        super().__init__(
            settings,
            client_id,
            username=username,
            password=password,
            cond=cond,
            deliver=deliver,
            subscriptions=[(SUBSCRIPTION, _subscribe_options())],
            protocol="5",
            session_expiry=SESSION_EXPIRY,
            reconnect_max=2,
            stop_on_auth_failure=False,
            name="emulator",
            logger=log,
        )

    def start(self) -> None:
        """Connect, subscribe and start the network thread; returns once subscribed.

        Raises:
            EmulatorError: already started, or the broker refused the connection or did not
                answer in time.
        """
        try:
            super().start()
        except AppClientError as exc:
            raise EmulatorError(str(exc)) from exc

    def publish(self, topic: str, payload: bytes, qos: int, timeout: float = 10) -> None:
        """Publish and, for QoS > 0, block until the broker acknowledged it.

        Raises:
            EmulatorError: not started, called on the network thread (from a listener), or the
                broker refused it.
            TimeoutError: not acknowledged within ``timeout`` seconds.
        """
        try:
            super().publish(topic, payload, qos, timeout)
        except AppClientError as exc:
            raise EmulatorError(str(exc)) from exc
