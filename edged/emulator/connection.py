"""The emulator's MQTT connection: the paho client, its network thread, connecting and publishing.

paho runs its own network thread (``loop_start()``), so the emulator does not depend on the
daemon's asyncio uplink. The connection state is guarded by the emulator's one condition
variable, so waits on recorded state also wake when the connection comes or goes.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

log = logging.getLogger("edged.emulator")

Deliver = Callable[[str, bytes, int, bool], None]
"""Takes each received message as ``(topic, payload, qos, retain)`` on the network thread."""

SUBSCRIPTION = "#"
"""Everything: :func:`rules.check_publication` tells gateway publications from platform ones."""

SESSION_EXPIRY = 300
"""Seconds the broker keeps the emulator's session (and queues its messages) while it reconnects."""


class EmulatorError(Exception):
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


class Connection:
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
        self.host = host
        self.port = port
        self.client_id = client_id
        self._username = username
        self._password = password
        self._tls_ca_file = tls_ca_file
        self._tls = tls
        self._keepalive = keepalive
        self._connect_timeout = connect_timeout
        self._cond = cond
        self._deliver = deliver
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connect_error: str | None = None
        self._starting = False
        self._network_thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect, subscribe and start the network thread; returns once subscribed.

        Raises:
            EmulatorError: already started, or the broker refused the connection or did not
                answer in time.
        """
        if self._client is not None:
            raise EmulatorError("emulator already started")
        if self._tls:
            self._check_tls()
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=mqtt.MQTTv5
        )
        client.username_pw_set(self._username, self._password)
        if self._tls:
            client.tls_set(ca_certs=self._tls_ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=1, max_delay=2)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = SESSION_EXPIRY
        with self._cond:
            self._connect_error = None
            self._connected = False
            self._starting = True
        self._client = client
        try:
            # A clean session first; reconnects resume it, so nothing is missed while the broker
            # restarts (it keeps the session for SESSION_EXPIRY seconds).
            client.connect(
                self.host,
                self.port,
                keepalive=self._keepalive,
                clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY,
                properties=properties,
            )
        except (OSError, ValueError) as exc:
            self._client = None
            _close_sockets(client)
            raise EmulatorError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc
        client.loop_start()
        with self._cond:
            self._cond.wait_for(
                lambda: self._connected or self._connect_error is not None, self._connect_timeout
            )
            error = self._connect_error
            connected = self._connected
            self._starting = False
        if not connected:
            self.stop()
            reason = error or f"no CONNACK/SUBACK within {self._connect_timeout:g} s"
            raise EmulatorError(f"cannot connect to {self.host}:{self.port}: {reason}")
        log.info("emulator %s connected to %s:%s", self.client_id, self.host, self.port)

    def _check_tls(self) -> None:
        # paho leaves the socket of a failed TLS handshake open (a ResourceWarning later); try
        # the handshake here first, with the same verification, so that failure is clean.
        context = ssl.create_default_context(cafile=self._tls_ca_file)
        try:
            with (
                socket.create_connection((self.host, self.port), self._connect_timeout) as raw,
                context.wrap_socket(raw, server_hostname=self.host),
            ):
                pass
        except OSError as exc:  # ssl.SSLError is an OSError
            raise EmulatorError(f"cannot connect to {self.host}:{self.port}: {exc}") from exc

    def stop(self) -> None:
        """Disconnect, join the network thread and close every socket. Idempotent."""
        client, self._client = self._client, None
        if client is None:
            return
        client.disconnect()
        client.loop_stop()
        _close_sockets(client)
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        with self._cond:
            return self._connected

    # -- paho callbacks (network thread) ---------------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self._network_thread = threading.current_thread()
        if reason.is_failure:
            with self._cond:
                starting = self._starting
                self._connect_error = f"refused: {reason}"
                self._cond.notify_all()
            if starting:
                client.disconnect()  # start() fails; do not keep retrying meanwhile
            else:
                log.warning("emulator reconnection refused: %s", reason)
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):  # includes ssl.SSLSocket
            # paho leaves Nagle on: an answer written right after a PUBACK would wait for the
            # broker's delayed ACK (tens of ms per DM round trip).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client.subscribe([(SUBSCRIPTION, _subscribe_options())])

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._cond:
            failed = [str(reason) for reason in reasons if reason.is_failure]
            if failed:
                self._connect_error = f"subscription to {SUBSCRIPTION!r} refused: {failed}"
            else:
                if not self._connected:
                    log.debug("emulator subscribed to %r", SUBSCRIPTION)
                self._connected = True
            self._cond.notify_all()

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        with self._cond:
            was_connected, self._connected = self._connected, False
            self._cond.notify_all()
        if was_connected and self._client is not None:
            log.warning("emulator disconnected (%s); reconnecting", reason)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._deliver(message.topic, bytes(message.payload), message.qos, bool(message.retain))
        except Exception:  # the network thread must survive any message
            log.exception("emulator failed to process a message")

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, timeout: float = 10) -> None:
        """Publish and, for QoS > 0, block until the broker acknowledged it.

        Raises:
            EmulatorError: not started, called on the network thread (from a listener), or the
                broker refused it.
            TimeoutError: not acknowledged within ``timeout`` seconds.
        """
        client = self._client
        if client is None:
            raise EmulatorError("emulator not started")
        if threading.current_thread() is self._network_thread:
            raise EmulatorError("send from a listener: the acknowledgement could never arrive")
        info = client.publish(topic, payload, qos=qos, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise EmulatorError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise EmulatorError(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise TimeoutError(f"publish to {topic} not acknowledged within {timeout:g} s")

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 from the network thread (waiting for the ack there would deadlock)."""
        client = self._client
        if client is None:
            return
        info = client.publish(topic, payload, qos=1, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("emulator could not answer on %s: %s", topic, mqtt.error_string(info.rc))


def _close_sockets(client: mqtt.Client) -> None:
    # paho closes its wake-up socket pair only in __del__; close it now so nothing leaks when
    # the client object lives on (reference cycles through the callbacks).
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        reset()
