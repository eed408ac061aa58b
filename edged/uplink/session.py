"""The gateway's one MQTT session: paho driven from the asyncio loop, reconnecting forever.

Threading: every paho call and every paho callback runs on the event loop thread. The only
blocking step, opening the connection (DNS, TCP maybe through a proxy, TLS handshake, WebSocket
upgrade), runs in a short-lived thread that returns a connected socket, or a WebSocket on one
(:mod:`edged.uplink.connect`); paho then only writes CONNECT.
:mod:`edged.uplink.driver` watches the socket with ``add_reader`` / ``add_writer`` and runs
paho's ``loop_misc`` every second for the keepalive.

Flow control: :meth:`Uplink.publish` hands a message to paho and returns its delivery future.
It waits while the session is down and while ``max_inflight`` QoS 1 messages await PUBACK.
paho keeps every QoS 1 message until its PUBACK and re-sends it (DUP) after a reconnect, so
none is lost while the process lives. PUBACKs are learnt by looking at paho's unacknowledged
messages after each read event (see :mod:`edged.uplink.delivery`), not by a callback per
message.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from edged.errors import PayloadTooLarge
from edged.text import safe
from edged.uplink.connect import ConnectError, FailureKind, Stream, ThreadCall, open_connection
from edged.uplink.delivery import Deliveries, UplinkClosedError
from edged.uplink.driver import LoopDriver
from edged.uplink.pahoclient import new_client
from edged.uplink.policy import ReconnectPolicy, Step
from edged.uplink.proxy import log_route
from edged.uplink.reasons import SESSION_TAKEN_OVER, refusal
from edged.uplink.settings import MAX_PAYLOAD, UplinkSettings
from edged.uplink.stats import IncomingMessage, UplinkState, UplinkStats
from edged.uplink.subscriptions import Subscriptions, batches

log = logging.getLogger("edged.uplink")

CONNECT_THREAD_GRACE = 2.0
"""How long shutdown waits for a connect thread still blocked in DNS/TCP/TLS."""
_OK = MQTTErrorCode.MQTT_ERR_SUCCESS
_NO_CONN = MQTTErrorCode.MQTT_ERR_NO_CONN


@dataclass(frozen=True)
class _Ended:
    """How an established connection ended."""

    lifetime: float
    reason: str
    by_us: bool = False
    taken_over: bool = False
    keepalive: bool = False


def _close_quietly(sock: Stream) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class Uplink:
    """The gateway's MQTT session (see the module docstring).

    ``on_message`` is called on the loop thread for every message the broker delivers; it must
    not block. For QoS 1 the PUBACK goes out after it returns.
    """

    def __init__(
        self, settings: UplinkSettings, on_message: Callable[[IncomingMessage], None]
    ) -> None:
        self.settings = settings
        self._on_message = on_message
        self._v5 = settings.mqtt_version == "5"
        self._client = new_client(
            settings,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            on_message=self._on_paho_message,
            on_subscribe=self._on_subscribe,
            on_publish=self._on_publish,
        )
        self._unacked = self._client.awaiting_ack
        self._deliveries = Deliveries(self._unacked)
        self._driver = LoopDriver(
            self._client,
            after_read=self._after_read,
            drained=self._wake,  # flush() waits for the write buffer to drain
            failed=self._io_failed,
            force_close=self._client.force_close,
        )
        self._subs = Subscriptions()
        self._policy = ReconnectPolicy(
            client_id=settings.client_id,
            endpoint=settings.endpoint,
            reconnect_initial=settings.reconnect_initial,
            reconnect_max=settings.reconnect_max,
            refused_initial=settings.refused_initial,
            refused_max=settings.refused_max,
            stable_after=settings.stable_after,
        )
        self._state = UplinkState.IDLE
        self._connected = False
        self._window = settings.max_inflight
        # Waiters (publish, flush, wait_connected) sleep on the current event; _wake() swaps in
        # a fresh one and sets the old one, so no wake-up is lost between check and wait.
        self._progress = asyncio.Event()
        self._waiters = 0
        self._stop = asyncio.Event()
        self._finished = asyncio.Event()
        self._running = False
        self._closing = False
        self._disconnect_requested = False
        self._connect_call: ThreadCall[Stream] | None = None
        self._connack: asyncio.Future[ConnectError | None] | None = None
        self._ended: asyncio.Future[_Ended] | None = None
        self._connected_at = 0.0
        self._ever_connected = False
        self._sub_mids: dict[int, list[tuple[str, int]]] = {}
        self._refused_filters: set[str] = set()
        self._rejected_reasons: set[int] = set()
        self._callback_failed = False
        self._connect_listeners: list[Callable[[], None]] = []
        # counters
        self._connects = 0
        self._attempts = 0
        self._published = 0
        self._handed_qos1 = 0
        self._refused_oversize = 0
        self._rejected = 0
        self._received = 0
        self._subscribe_packets = 0
        self._last_error = ""
        self._retry_delay = 0.0

    # -- setup ---------------------------------------------------------------------------------

    # -- public API ----------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a CONNACK-accepted connection is up."""
        return self._connected

    @property
    def stats(self) -> UplinkStats:
        """A snapshot of state and counters."""
        inflight = len(self._unacked)
        return UplinkStats(
            state=self._state.value,
            connected=self._connected,
            connects=self._connects,
            reconnects=max(0, self._connects - 1),
            attempts=self._attempts,
            published=self._published,
            acked=self._handed_qos1 - inflight,
            inflight=inflight,
            refused_oversize=self._refused_oversize,
            rejected=self._rejected,
            received=self._received,
            subscribe_packets=self._subscribe_packets,
            subscribed=len(self._subs.held),
            last_error=self._last_error,
            retry_delay=self._retry_delay,
            suspected_takeover=self._policy.suspects_takeover(
                self._lifetime() if self._connected else 0.0
            ),
        )

    def set_subscriptions(self, filters: Sequence[tuple[str, int]]) -> None:
        """Set the full subscription set as ``(topic filter, qos)`` pairs.

        Applied at once while connected (SUBSCRIBE for new or changed filters, UNSUBSCRIBE for
        dropped ones), otherwise after the next CONNACK.
        """
        self._subs.want(filters)
        if self._connected:
            self._apply_subscriptions()

    def add_connect_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` on the loop after every accepted connection (first and later),
        once the subscription set was sent. It must not block; an exception is logged."""
        self._connect_listeners.append(listener)

    def _tell_connected(self, listener: Callable[[], None]) -> None:
        if not self._connected:
            return  # the connection dropped again before the listener's turn
        try:
            listener()
        except Exception:
            log.exception("a connection listener failed")

    async def wait_connected(self) -> None:
        """Return once the session is connected."""
        while not self._connected:
            await self._wait_progress()

    async def publish(self, topic: str, payload: bytes, qos: int) -> asyncio.Future[None]:
        """Hand one message to the session; never retained. Returns its delivery future.

        Waits while disconnected and while ``max_inflight`` QoS 1 messages await PUBACK.
        Raises :class:`~edged.errors.PayloadTooLarge` (counted, nothing sent) above 131072 bytes
        and :class:`UplinkClosedError` once :meth:`close` began.

        The future is done at once for QoS 0. For QoS 1 it gets ``None`` when the broker's
        PUBACK arrives (after any re-sends), :class:`~edged.errors.PublishRejected` when the
        PUBACK carries a failure reason (MQTT 5), :class:`UplinkClosedError` when the uplink
        closed before the PUBACK, or :class:`~edged.uplink.delivery.DeliveryLost` if paho let
        go of the message without one. Ignoring the future is fine.
        """
        if len(payload) > MAX_PAYLOAD:
            self._refused_oversize += 1
            raise PayloadTooLarge(
                f"{len(payload)}-byte payload for {topic} exceeds the platform limit of"
                f" {MAX_PAYLOAD} bytes; not sent"
            )
        client = self._client
        while True:
            if self._connected and (qos == 0 or len(self._unacked) < self._window):
                info = client.publish(topic, payload, qos)
                rc = info.rc
                if rc == _OK or (rc == _NO_CONN and qos):
                    # NO_CONN at QoS > 0: paho keeps the message and sends it after CONNACK.
                    self._published += 1
                    delivery: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                    if qos:
                        self._handed_qos1 += 1
                        self._deliveries.track(info, delivery)
                    else:
                        delivery.set_result(None)
                    return delivery
                await self._not_handed_over(topic, qos, rc)
                continue
            if self._closing:
                raise UplinkClosedError("the uplink is closing; message not sent")
            await self._wait_progress()

    async def flush(self, timeout: float) -> bool:  # noqa: ASYNC109 - the app's interface
        """Wait (at most ``timeout`` s) until no QoS 1 message awaits PUBACK and everything
        handed over is written to the socket; True when that is so."""
        deadline = time.monotonic() + timeout
        while self._unacked or (self._driver.sock is not None and self._client.want_write()):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._wait_progress()
        return True

    async def close(self, timeout: float) -> None:  # noqa: ASYNC109 - the app's interface
        """Flush in-flight QoS 1 messages (at most ``timeout`` s), DISCONNECT, end :meth:`run`.

        The delivery futures of messages still unacknowledged then fail with
        :class:`UplinkClosedError`.
        """
        deadline = time.monotonic() + timeout
        first = not self._closing
        self._closing = True
        if not self._running:
            self._state = UplinkState.CLOSED
            self._deliveries.abandon()
            return
        if first:
            self._state = UplinkState.CLOSING
            if not await self.flush(timeout):
                log.warning(
                    "%d QoS 1 message(s) were not acknowledged by the broker before shutdown",
                    len(self._unacked),
                )
            self._stop.set()
            self._wake()
            if self._connected:
                self._disconnect()
                remaining = max(1.0, deadline - time.monotonic())
                ended = self._ended
                if ended is not None:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(remaining):
                            await asyncio.shield(ended)  # run() awaits it too
                if self._driver.sock is not None:
                    self._client.force_close()
                    self._connection_gone(
                        _Ended(self._lifetime(), "closed by the gateway", by_us=True)
                    )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(1.0, deadline - time.monotonic())):
                await self._finished.wait()
        self._deliveries.abandon()

    async def run(self) -> None:
        """Connect, then reconnect with backoff forever; returns after :meth:`close`."""
        if self._running:
            raise RuntimeError("Uplink.run() is already running")
        if self._closing:
            return
        self._running = True
        self._finished.clear()
        self._driver.bind(asyncio.get_running_loop())
        log_route(
            self.settings.host,
            self.settings.endpoint,
            tls=self.settings.tls,
            proxy=self.settings.proxy,
        )
        try:
            while not self._stop.is_set():
                try:
                    step = await self._attempt()
                except Exception as exc:  # the session must outlive any bug
                    log.exception("unexpected error in the MQTT session; reconnecting")
                    if self._driver.sock is not None:
                        self._client.force_close()
                    self._connected = False
                    step = self._policy.attempt_failed(
                        ConnectError(FailureKind.UNREACHABLE, f"unexpected error: {exc!r}")
                    )
                if step is None:
                    break
                self._retry_delay = step.delay
                self._report(step)
                self._state = UplinkState.BACKOFF
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(step.delay):
                        await self._stop.wait()
        finally:
            await self._teardown()
            self._running = False
            self._state = UplinkState.CLOSED if self._closing else UplinkState.IDLE
            self._finished.set()
            self._wake()

    # -- connection lifecycle ------------------------------------------------------------------

    async def _attempt(self) -> Step | None:
        """One connection attempt and, if it succeeds, the connection's life.

        Returns the next step after a failure or a drop, or None when asked to stop.
        """
        s = self.settings
        self._state = UplinkState.CONNECTING
        self._attempts += 1
        deadline = time.monotonic() + s.connect_timeout  # TCP + TLS + CONNACK together
        self._connack = self._ended = None
        self._disconnect_requested = False
        # The blocking edge: DNS, TCP connect (maybe through a proxy), TLS handshake and
        # WebSocket upgrade, in a thread of its own.
        call: ThreadCall[Stream] = ThreadCall(
            functools.partial(
                open_connection,
                s.host,
                s.port,
                s.connect_timeout,
                tls=s.tls,
                ca_file=s.ca_file,
                websocket_path=s.ws_path if s.transport == "websockets" else None,
                proxy=s.proxy,
            ),
            name="edged-uplink-connect",
            discard=_close_quietly,
        )
        self._connect_call = call
        stop: asyncio.Future[Any] = asyncio.ensure_future(self._stop.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {call.result, stop}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not call.result.done():
            return None  # teardown abandons the call; the thread closes what it produces
        try:
            sock = call.take()
        except ConnectError as failure:
            return self._policy.attempt_failed(failure)
        except (OSError, ValueError) as exc:  # e.g. a host name the IDNA codec rejects
            return self._policy.attempt_failed(
                ConnectError(
                    FailureKind.UNREACHABLE, f"cannot connect to {self.settings.endpoint}: {exc}"
                )
            )
        return await self._handshake(sock, deadline)

    async def _handshake(self, sock: Stream, deadline: float) -> Step | None:
        loop = asyncio.get_running_loop()
        connack: asyncio.Future[ConnectError | None] = loop.create_future()
        self._connack = connack
        self._client.hand_over(sock)
        try:
            rc = self._client.reconnect()  # non-blocking now: takes the socket, queues CONNECT
        except (OSError, ValueError) as exc:
            _close_quietly(sock)
            return self._policy.attempt_failed(
                ConnectError(
                    FailureKind.UNREACHABLE, f"cannot start MQTT on {self.settings.endpoint}: {exc}"
                )
            )
        if rc != _OK:
            self._client.force_close()
            return self._policy.attempt_failed(
                ConnectError(
                    FailureKind.UNREACHABLE,
                    f"cannot send CONNECT to {self.settings.endpoint}: {mqtt.error_string(rc)}",
                )
            )
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancellation that
        # arrives just as the awaited future completes.
        try:
            async with asyncio.timeout_at(self._loop_time(deadline)):
                failure = await connack
        except TimeoutError:
            self._client.force_close()
            failure = ConnectError(
                FailureKind.TIMEOUT,
                f"{self.settings.endpoint} accepted the connection but sent no CONNACK within"
                f" connect_timeout ({self.settings.connect_timeout:g} s)",
            )
        if failure is not None:
            return self._policy.attempt_failed(failure)
        ended = self._ended
        assert ended is not None
        if self._stop.is_set():
            self._disconnect()
        result = await ended
        if result.by_us or self._stop.is_set():
            return None
        return self._policy.connection_ended(
            result.lifetime, result.reason, taken_over=result.taken_over, keepalive=result.keepalive
        )

    def _disconnect(self) -> None:
        """Queue DISCONNECT; the writer sends it and paho then closes the socket."""
        self._disconnect_requested = True
        self._client.disconnect()

    def _report(self, step: Step) -> None:
        if step.message is None:
            return
        self._last_error = self._redact(step.message)
        log.log(step.level, "%s", self._last_error)

    def _redact(self, text: str) -> str:
        token = self.settings.password.reveal()
        return text.replace(token, "********") if len(token) >= 4 else text

    @staticmethod
    def _loop_time(monotonic_deadline: float) -> float:
        """``monotonic_deadline`` on the running loop's clock (for ``asyncio.timeout_at``)."""
        return asyncio.get_running_loop().time() + (monotonic_deadline - time.monotonic())

    def _lifetime(self) -> float:
        return time.monotonic() - self._connected_at

    def _drop(self, sock: Any, reason: str) -> None:
        """Close the connection on ``sock`` if it is still the current one."""
        if sock is not None and self._driver.sock is sock:
            self._client.force_close()
            self._connection_gone(_Ended(self._lifetime(), reason))

    def _connection_gone(self, ended: _Ended) -> None:
        """The connection is over (paho said so, or we closed it): settle waiters."""
        self._connected = False
        self._subs.connection_lost()
        self._sub_mids.clear()
        if self._connack is not None and not self._connack.done():
            self._connack.set_result(
                ConnectError(
                    FailureKind.UNREACHABLE,
                    f"{self.settings.endpoint} closed the connection before answering CONNECT"
                    f" ({ended.reason})",
                )
            )
        elif self._ended is not None and not self._ended.done():
            self._ended.set_result(ended)
        self._wake()

    async def _teardown(self) -> None:
        if self._driver.sock is not None:
            # Cancelled while connected: a best-effort DISCONNECT, then close regardless.
            self._disconnect()
            with contextlib.suppress(Exception):
                self._client.loop_write()
            if self._driver.sock is not None:
                self._client.force_close()
            self._connection_gone(_Ended(self._lifetime(), "closed by the gateway", by_us=True))
        self._driver.stop_timer()
        call, self._connect_call = self._connect_call, None
        if call is not None:
            call.abandon()
            if not await call.finished(min(CONNECT_THREAD_GRACE, self.settings.connect_timeout)):
                log.debug("a connect thread is still blocked; it closes its socket when done")

    # -- waiting -------------------------------------------------------------------------------

    async def _wait_progress(self) -> None:
        event = self._progress
        self._waiters += 1
        try:
            await event.wait()
        finally:
            self._waiters -= 1

    def _wake(self) -> None:
        if self._waiters:
            event, self._progress = self._progress, asyncio.Event()
            event.set()

    def _after_read(self) -> None:
        self._deliveries.settle()
        # Wake publishers as soon as there is room for one more: their next PUBLISH carries
        # the ACK a broker without TCP_NODELAY waits for before sending further PUBACKs.
        if self._waiters and len(self._unacked) < self._window:
            self._wake()

    def _io_failed(self, reason: str) -> None:
        self._connection_gone(_Ended(self._lifetime(), reason))

    async def _not_handed_over(self, topic: str, qos: int, rc: int) -> None:
        """paho did not take the message (queue full, no connection): wait, then retry."""
        log.debug(
            "paho did not take a QoS %d message for %s (%s); retrying",
            qos,
            topic,
            mqtt.error_string(rc),
        )
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(0.05):
                await self._wait_progress()

    # -- paho protocol callbacks (loop thread) -------------------------------------------------

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        connack = self._connack
        if reason.is_failure:
            if connack is not None and not connack.done():
                connack.set_result(
                    refusal(
                        reason.value,
                        reason.getName(),
                        self.settings.client_id,
                        self.settings.endpoint,
                    )
                )
            return  # paho closes the socket next
        if self._connected:
            # A second CONNACK on one connection breaks the protocol. Drop the connection (not
            # from inside this callback: paho holds the lock that closing the socket takes).
            sock = self._driver.sock
            asyncio.get_running_loop().call_soon(
                self._drop, sock, "the broker sent a second CONNACK"
            )
            return
        self._connected = True
        self._connected_at = time.monotonic()
        self._connects += 1
        self._state = UplinkState.CONNECTED
        self._window = self.settings.max_inflight
        receive_maximum = getattr(properties, "ReceiveMaximum", None) if self._v5 else None
        if receive_maximum:
            self._window = min(self._window, int(receive_maximum))
        session_present = bool(flags.session_present)
        if not session_present or not self._ever_connected:
            # Without a session the broker holds no subscriptions; on our first connect we
            # cannot know which ones an old session holds, so subscribe everything then too.
            self._subs.session_lost()
        self._ever_connected = True
        level, message = self._policy.connected(session_present=session_present)
        log.log(level, "%s", message)
        self._ended = asyncio.get_running_loop().create_future()
        self._apply_subscriptions()
        if connack is not None and not connack.done():
            connack.set_result(None)
        self._wake()
        for listener in list(self._connect_listeners):
            asyncio.get_running_loop().call_soon(self._tell_connected, listener)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        from_server = bool(flags.is_disconnect_packet_from_server)
        name = reason.getName()
        if from_server:
            text = f"the broker sent DISCONNECT: {name} ({reason.value})"
        elif name == "Keep alive timeout":
            text = "no answer to keepalive pings"
        elif name == "Success":
            text = "closed by the gateway"
        else:
            text = "the connection was closed by the broker or the network"
        by_us = self._disconnect_requested and not from_server
        self._connection_gone(
            _Ended(
                self._lifetime(),
                text,
                by_us=by_us,
                taken_over=from_server and reason.value == SESSION_TAKEN_OVER,
                keepalive=name == "Keep alive timeout",
            )
        )

    def _on_paho_message(
        self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage
    ) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            log.warning("dropped a message whose topic is not UTF-8")
            return
        self._received += 1
        payload = message.payload
        incoming = IncomingMessage(
            topic,
            payload if isinstance(payload, bytes) else bytes(payload),
            message.qos,
            bool(message.retain),
        )
        try:
            self._on_message(incoming)
        except Exception:
            if not self._callback_failed:
                self._callback_failed = True
                log.exception(
                    "the message handler failed on %s (further failures at DEBUG)", safe(topic)
                )
            else:
                log.debug("the message handler failed on %s", safe(topic), exc_info=True)

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        batch = self._sub_mids.pop(mid, [])
        self._subs.acknowledged(batch)
        for (topic_filter, _qos), reason in zip(batch, reasons, strict=False):
            if reason.is_failure and topic_filter not in self._refused_filters:
                self._refused_filters.add(topic_filter)
                log.error(
                    "the broker refused the subscription to %s (%s): nothing will arrive on it",
                    topic_filter,
                    reason.getName(),
                )

    def _on_publish(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties,
    ) -> None:
        if reason.is_failure:
            self._rejected += 1
            self._deliveries.refused(mid, reason.value, reason.getName())
            if reason.value not in self._rejected_reasons:
                self._rejected_reasons.add(reason.value)
                log.warning(
                    "the broker rejected a publication: %s (%d)", reason.getName(), reason.value
                )

    def _apply_subscriptions(self) -> None:
        add, remove = self._subs.pending()
        # UNSUBSCRIBE first: once a later SUBACK arrives, the broker has processed both.
        for filters in batches(remove):
            self._client.unsubscribe(filters)
        for batch in batches(add):
            rc, mid = self._client.subscribe(batch)
            if rc != _OK or mid is None:
                self._subs.connection_lost()  # retried after the next CONNACK
                return
            self._sub_mids[mid] = batch
            self._subscribe_packets += 1
