"""The platform side's MQTT connection: the paho client, its network thread, subscribing,
reconnecting and publishing. Used by the application client and by the platform emulator.

paho runs its own network thread (``loop_start()``), so the platform side does not depend on the
daemon's asyncio uplink and can be called from plain synchronous code. The connection state is
guarded by the owner's condition variable, so the owner's waits also wake when the connection
comes or goes. paho reconnects on its own, with a delay doubling from 1 s up to
``reconnect_max``; the subscriptions are made again on every connect.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from typing import Any, Literal

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edged.appclient.settings import ConnectionSettings

Deliver = Callable[[str, bytes, int, bool], None]
"""Takes each received message as ``(topic, payload, qos, retain)`` on the network thread."""

StateListener = Callable[[str, str], None]
"""Told ``("connected" | "lost" | "refused", detail)`` on the network thread."""

Subscription = tuple[str, int | SubscribeOptions]

AUTH_REFUSALS = frozenset({134, 135})
"""CONNACK reasons for bad credentials: MQTT 5 codes, which paho also maps 3.1.1's 4 and 5 to."""


class AppClientError(Exception):
    """Could not connect, subscribe or publish."""


class AuthRefused(AppClientError):
    """The broker refused the credentials (bad API key or token, or not authorized)."""


class Connection:
    """An MQTT client that reconnects, subscribes again after each connect, and publishes.

    Args:
        settings: Where and how to connect.
        client_id: The MQTT client id.
        username: User name (an API key), or ``None`` to send none.
        password: Password (token). Never logged.
        cond: The owner's condition variable; it guards the connection state too.
        deliver: Called with every message received.
        subscriptions: Made on every connect (more with :meth:`subscribe`).
        protocol: ``"3.1.1"`` (what the platform fully supports) or ``"5"``.
        clean: The clean-session flag (3.1.1). With MQTT 5: clean start on the first connect
            only, and the session kept ``session_expiry`` seconds, so reconnects resume it.
        session_expiry: MQTT 5 session expiry interval in seconds.
        reconnect_max: Longest delay between reconnection attempts, in seconds.
        stop_on_auth_failure: When a reconnection is refused for its credentials, stop
            retrying (they will not get better) and report ``refused``.
        name: What to call this client in messages and logs.
        logger: Where to log.
        on_state: Told about connection changes (on the network thread).
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        client_id: str,
        *,
        username: str | None,
        password: str | None,
        cond: threading.Condition,
        deliver: Deliver,
        subscriptions: Sequence[Subscription] = (),
        protocol: Literal["3.1.1", "5"] = "3.1.1",
        clean: bool = True,
        session_expiry: int = 0,
        reconnect_max: float = 30.0,
        stop_on_auth_failure: bool = True,
        name: str = "application",
        logger: logging.Logger | None = None,
        on_state: StateListener | None = None,
    ) -> None:
        self.settings = settings
        self.client_id = client_id
        self.name = name
        self._username = username
        self._password = password
        self._cond = cond
        self._deliver = deliver
        self._subscriptions: list[Subscription] = list(subscriptions)
        self._protocol = protocol
        self._clean = clean
        self._session_expiry = session_expiry
        self._reconnect_max = reconnect_max
        self._stop_on_auth_failure = stop_on_auth_failure
        self._log = logger or logging.getLogger("edged.appclient")
        self._on_state = on_state
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connect_error: str | None = None
        self._auth_refused = False
        self._starting = False
        self._connect_mid: int | None = None
        self._subacks: dict[int, list[ReasonCode]] = {}
        self._network_thread: threading.Thread | None = None

    @property
    def host(self) -> str:
        """Broker host."""
        return self.settings.host

    @property
    def port(self) -> int:
        """Broker port."""
        return self.settings.port

    # -- lifecycle -------------------------------------------------------------------------------

    def _new_client(self) -> mqtt.Client:
        settings = self.settings
        v5 = self._protocol == "5"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else self._clean,
            transport=settings.transport,
        )
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if settings.tls:
            client.tls_set(ca_certs=settings.ca_file, cert_reqs=ssl.CERT_REQUIRED)
        if settings.transport == "websockets":
            client.ws_set_options(path=settings.ws_path)
        if settings.proxy is not None:
            try:
                client.proxy_set(**settings.proxy.paho_args())
            except ValueError as exc:
                raise AppClientError(str(exc)) from exc
        client.reconnect_delay_set(min_delay=1, max_delay=max(1, round(self._reconnect_max)))
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        return client

    def start(self) -> None:
        """Connect, subscribe and start the network thread; returns once subscribed.

        Raises:
            AuthRefused: the broker refused the credentials.
            AppClientError: already started, the broker could not be reached, refused the
                connection or a subscription, or did not answer in time.
        """
        if self._client is not None:
            raise AppClientError(f"{self.name} already started")
        settings = self.settings
        if settings.tls and settings.transport == "tcp" and settings.proxy is None:
            self._check_tls()
        client = self._new_client()
        with self._cond:
            self._connect_error = None
            self._auth_refused = False
            self._connected = False
            self._starting = True
        self._client = client
        try:
            self._connect(client)
        except (OSError, ValueError) as exc:
            self._client = None
            _close_sockets(client)
            raise AppClientError(f"cannot connect to {settings.address}: {exc}") from exc
        client.loop_start()
        with self._cond:
            self._cond.wait_for(
                lambda: self._connected or self._connect_error is not None,
                settings.connect_timeout,
            )
            error, auth = self._connect_error, self._auth_refused
            connected = self._connected
            self._starting = False
        if not connected:
            self.stop()
            reason = error or f"no answer within {settings.connect_timeout:g} s"
            message = f"cannot connect to {settings.address}: {reason}"
            raise AuthRefused(message) if auth else AppClientError(message)
        self._log.info("%s %s connected to %s", self.name, self.client_id, settings.address)

    def _connect(self, client: mqtt.Client) -> None:
        settings = self.settings
        if self._protocol != "5":
            client.connect(settings.host, settings.port, keepalive=settings.keepalive)
            return
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = self._session_expiry
        # A clean session first; reconnects resume it, so nothing is missed while the broker
        # restarts (it keeps the session for session_expiry seconds).
        client.connect(
            settings.host,
            settings.port,
            keepalive=settings.keepalive,
            clean_start=mqtt.MQTT_CLEAN_START_FIRST_ONLY,
            properties=properties,
        )

    def _check_tls(self) -> None:
        # paho leaves the socket of a failed TLS handshake open (a ResourceWarning later); try
        # the handshake here first, with the same verification, so that failure is clean.
        settings = self.settings
        context = ssl.create_default_context(cafile=settings.ca_file)
        try:
            with (
                socket.create_connection(
                    (settings.host, settings.port), settings.connect_timeout
                ) as raw,
                context.wrap_socket(raw, server_hostname=settings.host),
            ):
                pass
        except OSError as exc:  # ssl.SSLError is an OSError
            raise AppClientError(f"cannot connect to {settings.address}: {exc}") from exc

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

    @property
    def fatal_error(self) -> str | None:
        """Why the connection gave up for good (refused credentials), or ``None``."""
        with self._cond:
            return self._connect_error if self._auth_refused and not self._starting else None

    # -- subscribing -----------------------------------------------------------------------------

    def subscribe(self, subscriptions: Sequence[Subscription], timeout: float = 10) -> None:
        """Add subscriptions, made again after every reconnect; when connected, block until
        the broker granted them.

        Raises:
            AppClientError: refused, or called on the network thread while connected.
            TimeoutError: no SUBACK within ``timeout`` seconds.
        """
        with self._cond:
            self._subscriptions.extend(subscriptions)
            client = self._client if self._connected else None
        if client is None:
            return  # made on the next connect
        if threading.current_thread() is self._network_thread:
            raise AppClientError("subscribe from a listener: the SUBACK could never arrive")
        result, mid = client.subscribe(_as_paho(subscriptions))
        if result != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            raise AppClientError(f"subscription failed: {mqtt.error_string(result)}")
        with self._cond:
            if not self._cond.wait_for(lambda: mid in self._subacks, timeout):
                raise TimeoutError(f"no SUBACK within {timeout:g} s")
            reasons = self._subacks.pop(mid)
        failed = [str(reason) for reason in reasons if reason.is_failure]
        if failed:
            filters = [topic for topic, _ in subscriptions]
            raise AppClientError(f"subscription to {filters} refused: {failed}")

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
            self._refused(client, reason)
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):  # includes ssl.SSLSocket
            # paho leaves Nagle on: an answer written right after a PUBACK would wait for the
            # broker's delayed ACK (tens of ms per DM round trip).
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._cond:
            subscriptions = list(self._subscriptions)
            if not subscriptions:
                self._became_connected()
                return
        _, mid = client.subscribe(_as_paho(subscriptions))
        with self._cond:
            self._connect_mid = mid

    def _refused(self, client: mqtt.Client, reason: ReasonCode) -> None:
        auth = reason.value in AUTH_REFUSALS
        with self._cond:
            starting = self._starting
            self._connect_error = f"refused: {reason}"
            self._auth_refused = auth
            self._cond.notify_all()
        if starting or (auth and self._stop_on_auth_failure):
            # Retrying would not help: start() fails, or the credentials are wrong (one clear
            # error rather than a reconnection every few seconds).
            client.disconnect()
            if not starting:
                self._log.error("%s: reconnection refused: %s; giving up", self.name, reason)
                self._tell("refused", str(reason))
        else:
            self._log.warning("%s reconnection refused: %s", self.name, reason)
            self._tell("lost", f"refused: {reason}")

    def _became_connected(self) -> None:
        # With the condition held.
        if not self._connected:
            self._log.debug("%s connected and subscribed", self.name)
        self._connected = True
        self._cond.notify_all()
        if not self._starting:
            self._tell("connected", self.settings.address)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        with self._cond:
            if mid != self._connect_mid:
                self._subacks[mid] = reasons
                self._cond.notify_all()
                return
            failed = [str(reason) for reason in reasons if reason.is_failure]
            if failed:
                filters = [topic for topic, _ in self._subscriptions]
                self._connect_error = f"subscription to {filters} refused: {failed}"
                self._cond.notify_all()
            else:
                self._became_connected()

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
            self._log.warning("%s disconnected (%s); reconnecting", self.name, reason)
            self._tell("lost", str(reason))

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._deliver(message.topic, bytes(message.payload), message.qos, bool(message.retain))
        except Exception:  # noqa: BLE001 - the network thread must survive any message
            self._log.exception("%s failed to process a message", self.name)

    def _tell(self, state: str, detail: str) -> None:
        if self._on_state is None:
            return
        try:
            self._on_state(state, detail)
        except Exception:  # noqa: BLE001 - the network thread must survive its listeners
            self._log.exception("%s: a connection listener failed", self.name)

    # -- publishing ------------------------------------------------------------------------------

    def publish(self, topic: str, payload: bytes, qos: int, timeout: float = 10) -> None:
        """Publish and, for QoS > 0, block until the broker acknowledged it.

        Raises:
            AppClientError: not started, called on the network thread (from a listener), or
                the broker refused it.
            TimeoutError: not acknowledged within ``timeout`` seconds.
        """
        client = self._client
        if client is None:
            raise AppClientError(f"{self.name} not started")
        if threading.current_thread() is self._network_thread:
            raise AppClientError("send from a listener: the acknowledgement could never arrive")
        info = client.publish(topic, payload, qos=qos, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise AppClientError(f"publish to {topic} failed: {mqtt.error_string(info.rc)}")
        try:
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            raise AppClientError(f"publish to {topic} failed: {exc}") from exc
        if not info.is_published():
            raise TimeoutError(f"publish to {topic} not acknowledged within {timeout:g} s")

    def publish_nowait(self, topic: str, payload: bytes) -> None:
        """Publish at QoS 1 from the network thread (waiting for the ack there would deadlock)."""
        client = self._client
        if client is None:
            return
        info = client.publish(topic, payload, qos=1, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._log.warning(
                "%s could not publish on %s: %s", self.name, topic, mqtt.error_string(info.rc)
            )


def _as_paho(subscriptions: Sequence[Subscription]) -> list[Any]:
    # paho's annotation takes a list of all-int or all-options pairs, never a mix; the owner
    # never mixes them (3.1.1 uses ints, the emulator's MQTT 5 options).
    return list(subscriptions)


def _close_sockets(client: mqtt.Client) -> None:
    # paho closes its wake-up socket pair only in __del__; close it now so nothing leaks when
    # the client object lives on (reference cycles through the callbacks).
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        reset()
