"""The platform emulator: an MQTT application on a local broker playing Watson IoT / Maximo IoT.

Threading: paho runs its own network thread (``loop_start()``). This keeps the emulator
independent of the daemon's asyncio uplink, so it is an independent oracle in tests, and lets a
test call it from plain synchronous code. Everything the network thread records is guarded by
one condition variable; every public method is thread-safe. Listeners and the DM server's
answers run on the network thread; the public ``send_*`` / ``dm_*`` calls block the caller until
the broker acknowledged them, so they must not be called from a listener.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

from edged.emulator import dmrules, grammar, notify, rules
from edged.emulator.answers import Answer, AnswerPolicy
from edged.emulator.records import (
    DeviceRecord,
    DMExchange,
    DMMessage,
    Publication,
    ReceivedEvent,
    Record,
    SentCommand,
    SentNotify,
    Violation,
)
from edged.emulator.registry import DeviceRegistry
from edged.model import DeviceIdentity

log = logging.getLogger("edged.emulator")

T = TypeVar("T")
Listener = Callable[[Record], None]

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


def _matches_device(device: DeviceIdentity | str | None, candidate: DeviceIdentity) -> bool:
    if device is None:
        return True
    if isinstance(device, str):
        return candidate.device_id == device
    return candidate == device


def _encode(data: object, fmt: str) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str) and fmt != "json":
        return data.encode("utf-8")
    return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)


class PlatformEmulator:
    """A local stand-in for the platform, as an MQTT v5 application client ``a:<org>:<app_id>``.

    It subscribes to everything, records and checks every gateway publication (see
    :mod:`edged.emulator.rules`), keeps a device registry, answers the gateway's own DM requests
    and sends commands, notify messages and DM requests.

    Args:
        host: Broker host.
        port: Broker port.
        org: Organization id (used in the client id and notify messages).
        app_id: Application id; the client id is ``a:<org>:<app_id>`` and must be unique on the
            broker (a second client with the same id disconnects the first).
        username: Application user name (an API key on the real platform).
        password: Its password (token). Never logged.
        tls_ca_file: CA to verify the broker with; implies ``tls``.
        tls: Use TLS (with the system trust store unless ``tls_ca_file`` is given).
        keepalive: MQTT keep-alive in seconds.
        min_lifetime: Smallest non-zero manage lifetime accepted without a violation.
        connect_timeout: Seconds :meth:`start` waits for CONNACK and SUBACK.
    """

    def __init__(
        self,
        host: str,
        port: int,
        org: str,
        *,
        app_id: str = "emulator",
        username: str,
        password: str,
        tls_ca_file: str | Path | None = None,
        tls: bool = False,
        keepalive: int = 30,
        min_lifetime: int = 3600,
        connect_timeout: float = 10.0,
    ) -> None:
        self.host = host
        self.port = port
        self.org = org
        self.client_id = grammar.application_client_id(org, app_id)
        self._username = username
        self._password = password
        self._tls_ca_file = str(tls_ca_file) if tls_ca_file is not None else None
        self._tls = tls or tls_ca_file is not None
        self._keepalive = keepalive
        self._min_lifetime = min_lifetime
        self._connect_timeout = connect_timeout

        # RLock: wait_for() predicates may call the public accessors, which take the lock too.
        self._cond = threading.Condition(threading.RLock())
        self._client: mqtt.Client | None = None
        self._connected = False
        self._connect_error: str | None = None
        self._starting = False
        self._network_thread: threading.Thread | None = None
        self._generation = 0  # bumped by clear(): running waits restart their scan
        self._publications: list[Publication] = []
        self._events: list[ReceivedEvent] = []
        self._violations: list[Violation] = []
        self._dm_messages: list[DMMessage] = []
        self._dm_exchanges: list[DMExchange] = []
        self._commands: list[SentCommand] = []
        self._notifies: list[SentNotify] = []
        self._registry = DeviceRegistry()
        self._answers = AnswerPolicy()
        self._issued: dict[str, DMMessage] = {}  # every DM request the emulator sent, by reqId
        self._outstanding: set[str] = set()  # ... of which no answer came yet
        self._dm_responses: dict[str, DMMessage] = {}  # first answer per reqId
        self._listeners: list[Listener] = []

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> PlatformEmulator:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Connect, subscribe and start the network thread; returns once subscribed.

        Raises:
            EmulatorError: the broker refused the connection or did not answer in time.
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

    def wait_connected(self, timeout: float = 10) -> None:
        """Block until connected and subscribed (e.g. after a broker restart)."""
        self.wait_for(lambda: self._connected, timeout, "emulator connected")

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
            self._receive(message.topic, bytes(message.payload), message.qos, bool(message.retain))
        except Exception:  # the network thread must survive any message
            log.exception("emulator failed to process a message")

    # -- receiving -------------------------------------------------------------------------------

    def _receive(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        checked = rules.check_publication(
            topic, payload, qos, retain, min_lifetime=self._min_lifetime
        )
        if checked.kind == "platform":
            return  # commands, notify, DM requests: what an application sends, not a gateway
        now = time.time()
        emitted: list[Record] = []
        answer: tuple[str, bytes] | None = None
        with self._cond:
            self._publications.append(
                Publication(
                    topic,
                    checked.parsed,
                    payload,
                    checked.data,
                    qos,
                    retain,
                    now,
                    checked.violations,
                )
            )
            violations = list(checked.violations)
            parsed = checked.parsed
            if checked.accepted and isinstance(parsed, grammar.EventTopic):
                event = ReceivedEvent(
                    parsed.device,
                    parsed.event,
                    parsed.format,
                    topic,
                    payload,
                    checked.data,
                    qos,
                    retain,
                    now,
                )
                self._events.append(event)
                self._registry.saw_event(event)
                emitted.append(event)
            elif checked.accepted and isinstance(parsed, grammar.DMTopic):
                answer = self._receive_dm(
                    parsed,
                    topic=topic,
                    payload=payload,
                    checked=checked,
                    now=now,
                    violations=violations,
                    emitted=emitted,
                )
            self._violations.extend(violations)
            emitted.extend(violations)
            self._cond.notify_all()
        if answer is not None:
            self._publish_nowait(*answer)
        self._emit(emitted)

    def _receive_dm(
        self,
        parsed: grammar.DMTopic,
        *,
        topic: str,
        payload: bytes,
        checked: rules.Checked,
        now: float,
        violations: list[Violation],
        emitted: list[Record],
    ) -> tuple[str, bytes] | None:
        """Record a gateway DM message; return the answer to publish, if any (lock held)."""
        body = checked.data if isinstance(checked.data, dict) else None
        req_id = body.get("reqId") if body is not None else None
        req_id = req_id if isinstance(req_id, str) else None
        message = DMMessage("up", parsed.device, parsed.suffix, topic, payload, body, req_id, now)
        self._dm_messages.append(message)
        self._registry.saw_dm(parsed.device, now)
        if parsed.suffix == dmrules.RESPONSE:
            self._receive_response(message, violations, emitted)
            return None
        problem = next(
            (
                v.detail
                for v in checked.violations
                if v.rule in (rules.RULE_DM_JSON, rules.RULE_DM_SHAPE)
            ),
            None,
        )
        decision = self._answers.decide(parsed.device, parsed.suffix, problem)
        if req_id is None or decision.rc is None:
            unanswered = DMExchange("gateway", message, None)
            self._dm_exchanges.append(unanswered)
            emitted.append(unanswered)
            return None
        response_body: dict[str, Any] = {"rc": decision.rc, "reqId": req_id}
        if decision.message is not None:
            response_body["message"] = decision.message
        response_topic = grammar.dm_platform_topic(parsed.device, dmrules.RESPONSE)
        response_payload = orjson.dumps(response_body)
        response = DMMessage(
            "down",
            parsed.device,
            dmrules.RESPONSE,
            response_topic,
            response_payload,
            response_body,
            req_id,
            now,
        )
        self._dm_messages.append(response)
        exchange = DMExchange("gateway", message, response)
        self._dm_exchanges.append(exchange)
        emitted.append(exchange)
        if 200 <= decision.rc < 300 and body is not None:
            self._registry.accept_request(parsed.device, parsed.suffix, body, now)
        return response_topic, response_payload

    def _receive_response(
        self, message: DMMessage, violations: list[Violation], emitted: list[Record]
    ) -> None:
        """The gateway answered a DM request (lock held)."""
        req_id = message.req_id
        if req_id is None:
            return  # the shape check already flagged the missing reqId
        request = self._issued.get(req_id)
        if request is None:
            violations.append(
                Violation(message.topic, rules.RULE_DM_REQID, f"answer to unknown reqId {req_id!r}")
            )
            return
        if request.device != message.device:
            violations.append(
                Violation(
                    message.topic,
                    rules.RULE_DM_REQID,
                    f"reqId {req_id!r} was sent to {request.device}, answered for {message.device}",
                )
            )
        self._dm_responses.setdefault(req_id, message)
        if req_id in self._outstanding:
            self._outstanding.discard(req_id)
            exchange = DMExchange("platform", request, message)
            self._dm_exchanges.append(exchange)
            emitted.append(exchange)

    # -- listeners -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every new record (events, DM exchanges, commands and notifies
        sent, violations) in order; returns a function that removes it.

        Listeners run on the network thread (or the sending thread for sent records), must not
        send (that raises :class:`EmulatorError`), and an exception in one is logged and
        ignored. Waits are woken again after listeners ran, so a :meth:`wait_for` predicate may
        look at what a listener collected.
        """
        with self._cond:
            self._listeners.append(listener)

        def remove() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def _emit(self, records: list[Record]) -> None:
        if not records:
            return
        with self._cond:
            listeners = list(self._listeners)
        for listener in listeners:
            for record in records:
                try:
                    listener(record)
                except Exception:  # a broken listener must not stop the emulator
                    log.exception("emulator listener %r failed", listener)
        if listeners:
            with self._cond:  # wake waits whose predicates look at what listeners did
                self._cond.notify_all()

    # -- what was recorded -----------------------------------------------------------------------

    @property
    def publications(self) -> list[Publication]:
        """Every gateway publication so far (a copy), in arrival order."""
        with self._cond:
            return list(self._publications)

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every accepted event so far (a copy), in arrival order."""
        with self._cond:
            return list(self._events)

    @property
    def violations(self) -> list[Violation]:
        """Every rule violation so far (a copy): ``(topic, rule, detail)``."""
        with self._cond:
            return list(self._violations)

    @property
    def dm_messages(self) -> list[DMMessage]:
        """Every DM message in either direction so far (a copy)."""
        with self._cond:
            return list(self._dm_messages)

    @property
    def dm_exchanges(self) -> list[DMExchange]:
        """Every completed DM exchange (request and answer, or request left unanswered)."""
        with self._cond:
            return list(self._dm_exchanges)

    @property
    def commands_sent(self) -> list[SentCommand]:
        """Every command sent so far (a copy)."""
        with self._cond:
            return list(self._commands)

    @property
    def notifies_sent(self) -> list[SentNotify]:
        """Every notify message sent so far (a copy)."""
        with self._cond:
            return list(self._notifies)

    @property
    def devices(self) -> dict[DeviceIdentity, DeviceRecord]:
        """The device registry: every device seen, by identity (a copy)."""
        with self._cond:
            return self._registry.snapshot()

    def device(self, device: DeviceIdentity) -> DeviceRecord | None:
        """The registry record of ``device``, ``None`` when never seen."""
        with self._cond:
            return self._registry.get(device)

    def is_managed(self, device: DeviceIdentity) -> bool:
        """True when ``device`` is managed and its lifetime has not run out."""
        record = self.device(device)
        return record is not None and record.dm.is_managed(time.time())

    def clear(self, *, registry: bool = False) -> None:
        """Forget recorded messages, violations and exchanges (and the registry if asked)."""
        with self._cond:
            self._generation += 1
            for recorded in (
                self._publications,
                self._events,
                self._violations,
                self._dm_messages,
                self._dm_exchanges,
                self._commands,
                self._notifies,
            ):
                recorded.clear()
            if registry:
                self._registry.clear()
            self._cond.notify_all()

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10, what: str = "") -> T:
        """Block until ``predicate()`` is truthy and return its value.

        It is evaluated now and after every change of the emulator's state, with the emulator's
        lock held (so it sees a consistent state and may use the accessors).

        Raises:
            TimeoutError: not truthy within ``timeout`` seconds.
        """
        with self._cond:
            result = self._cond.wait_for(predicate, timeout)
        if not result:
            raise TimeoutError(f"{what or 'condition'} not met within {timeout:g} s")
        return result

    def _wait_matching(
        self,
        source: Callable[[], list[T]],
        match: Callable[[T], bool],
        count: int,
        timeout: float,
        what: str,
    ) -> list[T]:
        # Scans only what arrived since the last check, so waiting for many items stays linear.
        found: list[T] = []
        scanned = 0
        generation = self._generation

        def ready() -> bool:
            nonlocal scanned, generation
            if generation != self._generation:
                found.clear()
                scanned, generation = 0, self._generation
            items = source()
            for index in range(scanned, len(items)):
                if match(items[index]):
                    found.append(items[index])
            scanned = len(items)
            return len(found) >= count

        try:
            self.wait_for(ready, timeout, what)
        except TimeoutError:
            raise TimeoutError(
                f"{what}: {len(found)} of {count} within {timeout:g} s; {self._summary()}"
            ) from None
        return found[:count]

    def _summary(self) -> str:
        with self._cond:
            counts = Counter(f"{e.device}:{e.event}" for e in self._events)
            dm = Counter(f"{m.device}:{m.suffix}" for m in self._dm_messages if m.direction == "up")
            shown = ", ".join(f"{key} x{n}" for key, n in sorted(counts.items())) or "none"
            shown_dm = ", ".join(f"{key} x{n}" for key, n in sorted(dm.items())) or "none"
            return (
                f"events seen: {shown}; DM messages from the gateway: {shown_dm}; "
                f"violations: {len(self._violations)}; connected: {self._connected}"
            )

    def wait_for_events(
        self,
        count: int = 1,
        device: DeviceIdentity | str | None = None,
        event: str | None = None,
        predicate: Callable[[ReceivedEvent], bool] | None = None,
        timeout: float = 10,
    ) -> list[ReceivedEvent]:
        """Wait until ``count`` recorded events match and return the first ``count`` of them.

        Events recorded before the call count (since start or the last :meth:`clear`).
        ``device`` is an identity or a bare device id; ``event`` an event name; ``predicate``
        any further test.

        Raises:
            TimeoutError: fewer matched within ``timeout`` seconds (the message lists what came).
        """

        def match(item: ReceivedEvent) -> bool:
            return (
                _matches_device(device, item.device)
                and (event is None or item.event == event)
                and (predicate is None or predicate(item))
            )

        what = f"events device={device or '*'} event={event or '*'}"
        return self._wait_matching(lambda: self._events, match, count, timeout, what)

    def wait_for_dm(
        self,
        suffix: str | None = None,
        device: DeviceIdentity | str | None = None,
        count: int = 1,
        predicate: Callable[[DMMessage], bool] | None = None,
        timeout: float = 10,
    ) -> list[DMMessage]:
        """Like :meth:`wait_for_events`, for DM messages the gateway sent (``iotdevice-1``)."""

        def match(item: DMMessage) -> bool:
            return (
                item.direction == "up"
                and _matches_device(device, item.device)
                and (suffix is None or item.suffix == suffix)
                and (predicate is None or predicate(item))
            )

        what = f"DM messages device={device or '*'} suffix={suffix or '*'}"
        return self._wait_matching(lambda: self._dm_messages, match, count, timeout, what)

    def wait_for_violations(
        self, count: int = 1, rule: str | None = None, timeout: float = 10
    ) -> list[Violation]:
        """Wait until ``count`` violations (of ``rule``, if given) were recorded."""
        return self._wait_matching(
            lambda: self._violations,
            lambda v: rule is None or v.rule == rule,
            count,
            timeout,
            f"violations rule={rule or '*'}",
        )

    # -- sending ---------------------------------------------------------------------------------

    def _require_client(self) -> mqtt.Client:
        client = self._client
        if client is None:
            raise EmulatorError("emulator not started")
        return client

    def _publish(self, topic: str, payload: bytes, qos: int, timeout: float = 10) -> None:
        """Publish and, for QoS > 0, block until the broker acknowledged it."""
        client = self._require_client()
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

    def _publish_nowait(self, topic: str, payload: bytes) -> None:
        """Publish from the network thread (waiting for the ack there would deadlock)."""
        client = self._client
        if client is None:
            return
        info = client.publish(topic, payload, qos=1, retain=False)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("emulator could not answer on %s: %s", topic, mqtt.error_string(info.rc))

    def send_command(
        self,
        device: DeviceIdentity,
        command: str,
        data: object | bytes,
        fmt: str = "json",
        qos: int = 1,
    ) -> None:
        """Publish a command to ``device``; returns once the broker acknowledged it.

        ``data`` is sent as is when ``bytes``, as UTF-8 when a ``str`` with a non-JSON format,
        else JSON-encoded.

        Raises:
            ValueError: ``command`` or ``fmt`` cannot be a topic level.
            EmulatorError: not connected, or the broker refused it.
        """
        if not (grammar.is_valid_level(command) and grammar.is_valid_level(fmt)):
            raise ValueError(f"invalid command {command!r} or format {fmt!r}")
        topic = grammar.command_topic(device, command, fmt)
        payload = _encode(data, fmt)
        decoded = data if not isinstance(data, bytes | bytearray | memoryview) else None
        sent = SentCommand(device, command, fmt, topic, payload, decoded, qos, time.time())
        with self._cond:
            self._commands.append(sent)
            self._cond.notify_all()
        self._emit([sent])  # before publishing, so a fast answer is never rendered first
        self._publish(topic, payload, qos)

    def publish_notify(
        self,
        gateway: DeviceIdentity,
        *,
        device: DeviceIdentity | None = None,
        message: str,
        request: str = "publish",
        rc: int | str = notify.DEFAULT_RC,
        topic: str | None = None,
        client_id: str | None = None,
        qos: int = 1,
    ) -> dict[str, Any]:
        """Publish a gateway notify message (PROTOCOL.md §3.2) and return its body.

        ``device`` is the device the failed request was for; ``None`` leaves ``Type`` and ``Id``
        out, as for an invalid topic (then ``topic`` is required). ``topic`` defaults to the
        device's last event topic (``request="publish"``) or its command filter
        (``request="subscribe"``). ``client_id`` defaults to the gateway's. See
        :mod:`edged.emulator.notify` for the documented ``message`` texts.
        """
        if topic is None:
            if device is None:
                raise ValueError("topic is required when device is None")
            topic = self._default_notify_topic(device, request)
        body = notify.notify_body(
            topic=topic,
            client_id=client_id or grammar.gateway_client_id(self.org, gateway),
            message=message,
            device=device,
            request=request,
            rc=rc,
            at=time.time(),
        )
        notify_topic = grammar.notify_topic(gateway)
        sent = SentNotify(gateway, notify_topic, body, time.time())
        with self._cond:
            self._notifies.append(sent)
            self._cond.notify_all()
        self._emit([sent])
        self._publish(notify_topic, orjson.dumps(body), qos)
        return body

    def _default_notify_topic(self, device: DeviceIdentity, request: str) -> str:
        if request == "subscribe":
            return grammar.command_filter(device)
        record = self.device(device)
        if record is not None and record.last_events:
            latest = max(record.last_events.values(), key=lambda e: e.received_at)
            return latest.topic
        return grammar.event_topic(device, "event")

    def dm_publish(
        self, device: DeviceIdentity, suffix: str, body: Mapping[str, Any] | bytes, qos: int = 1
    ) -> DMMessage:
        """Publish a raw platform-to-gateway DM message (``iotdm-1/type/T/id/D/<suffix>``).

        For messages that expect no answer (``device/update`` without reqId) and for malformed
        requests in robustness tests. An answer, if any, is recorded but not waited for.
        """
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        decoded = dict(body) if not isinstance(body, bytes) else None
        req_id = decoded.get("reqId") if decoded is not None else None
        req_id = req_id if isinstance(req_id, str) else None
        topic = grammar.dm_platform_topic(device, suffix)
        message = DMMessage("down", device, suffix, topic, payload, decoded, req_id, time.time())
        with self._cond:
            self._dm_messages.append(message)
            if req_id is not None:
                self._issued[req_id] = message
            self._cond.notify_all()
        self._publish(topic, payload, qos)
        return message

    def dm_request(
        self,
        device: DeviceIdentity,
        suffix: str,
        d: Any = None,
        timeout: float = 10,
        *,
        req_id: str | None = None,
    ) -> dict[str, Any]:
        """Send a DM request with a fresh reqId and return the gateway's answer body.

        ``suffix`` is e.g. ``mgmt/initiate/device/reboot`` or ``observe``; ``d`` the request's
        ``d`` member (left out when ``None``).

        Raises:
            TimeoutError: no answer with that reqId on ``iotdevice-1/.../response`` in time.
        """
        req_id = req_id or str(uuid.uuid4())
        body: dict[str, Any] = {"reqId": req_id}
        if d is not None:
            body["d"] = d
        with self._cond:
            self._outstanding.add(req_id)  # before publishing: the answer may come at once
        try:
            request = self.dm_publish(device, suffix, body)
        except BaseException:
            with self._cond:
                self._outstanding.discard(req_id)
            raise
        try:
            answer = self.wait_for(
                lambda: self._dm_responses.get(req_id),
                timeout,
                f"answer to {suffix} reqId {req_id} for {device}",
            )
        except TimeoutError:
            with self._cond:
                self._outstanding.discard(req_id)
                exchange = DMExchange("platform", request, None)
                self._dm_exchanges.append(exchange)
            self._emit([exchange])
            raise
        assert answer is not None  # wait_for returns only a truthy value
        return dict(answer.body or {})

    # -- the DM server's answers -----------------------------------------------------------------

    def set_dm_answer(
        self,
        suffix: str | None = None,
        *,
        device: DeviceIdentity | None = None,
        rc: int | None = 200,
        message: str | None = None,
    ) -> None:
        """Choose how the DM server answers the gateway's requests.

        ``suffix`` / ``device`` ``None`` match any. ``rc=None`` sends no answer at all. A more
        specific rule wins: (device, suffix), (device), (suffix), then rc 400 for malformed
        requests, then the (any, any) default of rc 200.
        """
        with self._cond:
            self._answers.set(device, suffix, Answer(rc, message))

    def reset_dm_answers(self) -> None:
        """Back to answering 200 (400 for malformed requests)."""
        with self._cond:
            self._answers.reset()


def _close_sockets(client: mqtt.Client) -> None:
    # paho closes its wake-up socket pair only in __del__; close it now so nothing leaks when
    # the client object lives on (reference cycles through the callbacks).
    reset = getattr(client, "_reset_sockets", None)
    if reset is not None:
        reset()
