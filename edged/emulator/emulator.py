"""The platform emulator: an MQTT application on a local broker playing Watson IoT / Maximo IoT.

:class:`PlatformEmulator` is the public face; the work is done by the parts it composes:
:mod:`~edged.emulator.connection` (the paho client and its network thread),
:mod:`~edged.emulator.recorder` (what was seen and sent, listeners and waits),
:mod:`~edged.emulator.inbound` (checking and recording gateway messages, the DM server's
answers) and :mod:`~edged.emulator.outbound` (commands, notify messages and DM requests).

Threading: paho runs its own network thread (``loop_start()``). This keeps the emulator
independent of the daemon's asyncio uplink, so it is an independent oracle in tests, and lets a
test call it from plain synchronous code. Everything the network thread records is guarded by
one condition variable; every public method is thread-safe. Listeners and the DM server's
answers run on the network thread; the public ``send_*`` / ``dm_*`` calls block the caller until
the broker acknowledged them, so they must not be called from a listener.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import orjson

from edged.appclient import grammar
from edged.emulator import notify
from edged.emulator.answers import Answer
from edged.emulator.autoreg import DEFAULT_MAX_PENDING, AutoRegistration
from edged.emulator.connection import Connection, EmulatorError
from edged.emulator.inbound import Inbound
from edged.emulator.outbound import Outbound
from edged.emulator.recorder import Listener, Recorder
from edged.emulator.records import (
    DeviceRecord,
    DMExchange,
    DMMessage,
    Publication,
    ReceivedEvent,
    SentCommand,
    SentNotify,
    Violation,
)
from edged.emulator.registration import RegistrationAPI
from edged.model import DeviceIdentity

__all__ = ["EmulatorError", "Listener", "PlatformEmulator"]

T = TypeVar("T")


class PlatformEmulator(RegistrationAPI):
    """A local stand-in for the platform, as an MQTT v5 application client ``a:<org>:<app_id>``.

    It subscribes to everything, records and checks every gateway publication (see
    :mod:`edged.emulator.rules`), keeps a device registry, answers the gateway's own DM requests
    and sends commands, notify messages and DM requests. With ``registration_delay`` it models
    the auto-registration of the gateway's devices (methods in
    :class:`~edged.emulator.registration.RegistrationAPI`).

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
        gateway: The gateway under test; every other device counts as attached to it.
        registration_delay: Model auto-registration (PROTOCOL.md §3.1, see
            :mod:`edged.emulator.autoreg`): a new device is pending this many seconds before it
            is registered. ``None`` (the default): every device is accepted at once. Needs
            ``gateway``.
        max_pending: Pending registrations of the gateway beyond which a new device is a
            ``registration-cap`` violation.
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
        gateway: DeviceIdentity | None = None,
        registration_delay: float | None = None,
        max_pending: int = DEFAULT_MAX_PENDING,
    ) -> None:
        if registration_delay is not None and gateway is None:
            raise ValueError("registration_delay needs the gateway")
        self.host = host
        self.port = port
        self.org = org
        self.client_id = grammar.application_client_id(org, app_id)
        # One condition variable guards all state. RLock: wait_for() predicates may call the
        # public accessors, which take the lock too.
        self._cond = threading.Condition(threading.RLock())
        self._connection = Connection(
            host,
            port,
            self.client_id,
            username=username,
            password=password,
            tls_ca_file=str(tls_ca_file) if tls_ca_file is not None else None,
            tls=tls or tls_ca_file is not None,
            keepalive=keepalive,
            connect_timeout=connect_timeout,
            cond=self._cond,
            deliver=self._receive,
        )
        connection = self._connection
        self._recorder = Recorder(self._cond, connected=lambda: connection.connected)
        self.gateway = gateway
        self._autoreg: AutoRegistration | None = None
        if registration_delay is not None and gateway is not None:
            self._autoreg = AutoRegistration(
                gateway, org=org, delay=registration_delay, max_pending=max_pending
            )
            self._recorder.next_change = self._autoreg.next_change
        self._inbound = Inbound(self._recorder, min_lifetime, self._autoreg)
        self._outbound = Outbound(org, self._recorder, self._connection)

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
        self._connection.start()

    def stop(self) -> None:
        """Disconnect, join the network thread and close every socket. Idempotent."""
        self._connection.stop()

    @property
    def connected(self) -> bool:
        """True while connected and subscribed."""
        return self._connection.connected

    def wait_connected(self, timeout: float = 10) -> None:
        """Block until connected and subscribed (e.g. after a broker restart)."""
        self.wait_for(lambda: self._connection.connected, timeout, "emulator connected")

    def _receive(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        # The network thread: the answer goes out before listeners see what came.
        received = self._inbound.receive(topic, payload, qos, retain)
        if received.answer is not None:
            self._connection.publish_nowait(*received.answer)
        for sent in received.notifies:  # never wait for a PUBACK on the network thread
            self._connection.publish_nowait(sent.topic, orjson.dumps(sent.body))
        self._recorder.emit(received.records)

    # -- listeners -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every new record (events, DM exchanges, commands and notifies
        sent, violations) in order; returns a function that removes it.

        Listeners run on the network thread (or the sending thread for sent records), must not
        send (that raises :class:`EmulatorError`), and an exception in one is logged and
        ignored. Waits are woken again after listeners ran, so a :meth:`wait_for` predicate may
        look at what a listener collected.
        """
        return self._recorder.add_listener(listener)

    # -- what was recorded -----------------------------------------------------------------------

    @property
    def publications(self) -> list[Publication]:
        """Every gateway publication so far (a copy), in arrival order."""
        with self._cond:
            return list(self._recorder.publications)

    @property
    def events(self) -> list[ReceivedEvent]:
        """Every accepted event so far (a copy), in arrival order."""
        with self._cond:
            return list(self._recorder.events)

    @property
    def violations(self) -> list[Violation]:
        """Every rule violation so far (a copy): ``(topic, rule, detail)``."""
        with self._cond:
            return list(self._recorder.violations)

    @property
    def dm_messages(self) -> list[DMMessage]:
        """Every DM message in either direction so far (a copy)."""
        with self._cond:
            return list(self._recorder.dm_messages)

    @property
    def dm_exchanges(self) -> list[DMExchange]:
        """Every completed DM exchange (request and answer, or request left unanswered)."""
        with self._cond:
            return list(self._recorder.dm_exchanges)

    @property
    def commands_sent(self) -> list[SentCommand]:
        """Every command sent so far (a copy)."""
        with self._cond:
            return list(self._recorder.commands)

    @property
    def notifies_sent(self) -> list[SentNotify]:
        """Every notify message sent so far (a copy)."""
        with self._cond:
            return list(self._recorder.notifies)

    @property
    def devices(self) -> dict[DeviceIdentity, DeviceRecord]:
        """The device registry: every device seen, by identity (a copy)."""
        with self._cond:
            return self._recorder.registry.snapshot()

    def device(self, device: DeviceIdentity) -> DeviceRecord | None:
        """The registry record of ``device``, ``None`` when never seen."""
        return self._recorder.device(device)

    def is_managed(self, device: DeviceIdentity) -> bool:
        """True when ``device`` is managed and its lifetime has not run out."""
        record = self.device(device)
        return record is not None and record.dm.is_managed(time.time())

    def clear(self, *, registry: bool = False) -> None:
        """Forget recorded messages, violations and exchanges (and the registry if asked).

        With auto-registration, also the dropped publications and the pending history; with
        ``registry`` also every registration, pending or failed, and the failures injected.
        """
        with self._cond:
            self._recorder.clear(registry=registry)
            if self._autoreg is not None:
                self._autoreg.clear(states=registry)

    # -- waiting ---------------------------------------------------------------------------------

    def wait_for(self, predicate: Callable[[], T], timeout: float = 10, what: str = "") -> T:
        """Block until ``predicate()`` is truthy and return its value.

        It is evaluated now and after every change of the emulator's state, with the emulator's
        lock held (so it sees a consistent state and may use the accessors).

        Raises:
            TimeoutError: not truthy within ``timeout`` seconds.
        """
        return self._recorder.wait_for(predicate, timeout, what)

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
        return self._recorder.wait_for_events(count, device, event, predicate, timeout)

    def wait_for_dm(
        self,
        suffix: str | None = None,
        device: DeviceIdentity | str | None = None,
        count: int = 1,
        predicate: Callable[[DMMessage], bool] | None = None,
        timeout: float = 10,
    ) -> list[DMMessage]:
        """Like :meth:`wait_for_events`, for DM messages the gateway sent (``iotdevice-1``)."""
        return self._recorder.wait_for_dm(suffix, device, count, predicate, timeout)

    def wait_for_violations(
        self, count: int = 1, rule: str | None = None, timeout: float = 10
    ) -> list[Violation]:
        """Wait until ``count`` violations (of ``rule``, if given) were recorded."""
        return self._recorder.wait_for_violations(count, rule, timeout)

    # -- sending ---------------------------------------------------------------------------------

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
        self._outbound.send_command(device, command, data, fmt, qos)

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
        return self._outbound.publish_notify(
            gateway,
            device=device,
            message=message,
            request=request,
            rc=rc,
            topic=topic,
            client_id=client_id,
            qos=qos,
        )

    def dm_publish(
        self, device: DeviceIdentity, suffix: str, body: Mapping[str, Any] | bytes, qos: int = 1
    ) -> DMMessage:
        """Publish a raw platform-to-gateway DM message (``iotdm-1/type/T/id/D/<suffix>``).

        For messages that expect no answer (``device/update`` without reqId) and for malformed
        requests in robustness tests. An answer, if any, is recorded but not waited for.
        """
        return self._outbound.dm_publish(device, suffix, body, qos)

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
        return self._outbound.dm_request(device, suffix, d, timeout, req_id)

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
            self._inbound.answers.set(device, suffix, Answer(rc, message))

    def reset_dm_answers(self) -> None:
        """Back to answering 200 (400 for malformed requests)."""
        with self._cond:
            self._inbound.answers.reset()
