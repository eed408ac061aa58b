"""The application client: watch a fleet, publish commands and events, send DM requests.

Threading: like the emulator, paho runs its own network thread. Listeners run on it and must not
publish or subscribe (that raises :class:`AppClientError`); every public method is thread-safe
and blocks its caller until the broker acknowledged what it sent.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from edged.appclient import grammar
from edged.appclient.connection import AppClientError, Connection, StateListener
from edged.appclient.identity import ApiKey, AppIdentity, IdentityError, check_quickstart
from edged.appclient.messages import AppMessage, classify
from edged.appclient.settings import ConnectionSettings
from edged.model import DeviceIdentity

log = logging.getLogger("edged.appclient")

Listener = Callable[[AppMessage], None]

DM_QOS = 1
"""The DM server publishes and subscribes at QoS 1 (PROTOCOL.md §2.2)."""


@dataclass(frozen=True, slots=True)
class AppConfig:
    """Everything needed to connect as an application.

    Args:
        identity: Organization, appId and client-id form.
        api_key: API key and token; ``None`` only on Quickstart (no authentication there).
        connection: Host, port, TLS, transport, proxy.
    """

    identity: AppIdentity
    api_key: ApiKey | None
    connection: ConnectionSettings

    def __post_init__(self) -> None:
        check_quickstart(self.identity.org, tls=self.connection.tls)
        if self.api_key is None and not self.identity.is_quickstart:
            raise IdentityError("an API key and token are needed (only Quickstart has none)")


def encode(data: object, fmt: str) -> bytes:
    """A payload: ``bytes`` as they are, a ``str`` as UTF-8 when ``fmt`` is not ``json``,
    anything else as JSON."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if isinstance(data, str) and fmt != "json":
        return data.encode("utf-8")
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _check_level(what: str, value: str) -> None:
    if not grammar.is_valid_level(value):
        raise ValueError(f"{what} {value!r} cannot be a topic level (empty, '+', '#' or '/')")


def _check_device(device: DeviceIdentity) -> None:
    if not (grammar.is_valid_id(device.type_id) and grammar.is_valid_id(device.device_id)):
        raise ValueError(
            f"{device.type_id}:{device.device_id}: a typeId and deviceId are 1-36 of "
            "letters, digits, '-', '_' and '.'"
        )


class AppClient:
    """An MQTT application client ``a:<org>:<appId>`` (or a scalable form) on the platform.

    Args:
        config: Identity, credentials and connection settings.
        on_state: Told ``("connected" | "lost" | "refused", detail)`` when the connection
            comes back, is lost (paho reconnects with a growing delay), or is refused for its
            credentials (then it gives up; :attr:`fatal_error` says why).
    """

    def __init__(self, config: AppConfig, *, on_state: StateListener | None = None) -> None:
        self.config = config
        self.identity = config.identity
        self._cond = threading.Condition(threading.RLock())
        self._listeners: list[Listener] = []
        self._answers: dict[str, AppMessage] = {}
        self._waiting: set[str] = set()
        self._dm_filters: set[str] = set()
        key = config.api_key
        self._connection = Connection(
            config.connection,
            config.identity.client_id,
            username=key.key if key is not None else None,
            password=key.token if key is not None else None,
            cond=self._cond,
            deliver=self._receive,
            clean=config.identity.clean_session,
            name=f"application {config.identity.client_id}",
            logger=log,
            on_state=on_state,
        )

    @property
    def client_id(self) -> str:
        """The MQTT client id."""
        return self.identity.client_id

    # -- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> AppClient:
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
        """Connect (and make the subscriptions asked for so far); returns once connected.

        Raises:
            AuthRefused: the API key or token was refused.
            AppClientError: the broker could not be reached or did not answer in time.
        """
        self._connection.start()

    def stop(self) -> None:
        """Disconnect and stop the network thread. Idempotent."""
        self._connection.stop()

    @property
    def connected(self) -> bool:
        """True while connected (and subscribed)."""
        return self._connection.connected

    @property
    def fatal_error(self) -> str | None:
        """Why the client gave up reconnecting (its credentials were refused), or ``None``."""
        return self._connection.fatal_error

    def wait_until(self, predicate: Callable[[], bool], timeout: float | None) -> bool:
        """Block until ``predicate()`` is true (checked after every message and connection
        change, with the client's lock held) or ``timeout`` seconds passed; returns its value."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout)

    # -- receiving -------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every message received; returns a function removing it.

        Listeners run on the network thread; an exception in one is logged and ignored.
        """
        with self._cond:
            self._listeners.append(listener)

        def remove() -> None:
            with self._cond:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return remove

    def _receive(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        message = classify(topic, payload, qos, retain, time.time())
        with self._cond:
            if message.kind == "dm" and message.name == "response" and self._waiting:
                req_id = _req_id(message)
                if req_id in self._waiting:
                    self._answers[req_id] = message
            listeners = list(self._listeners)
            self._cond.notify_all()
        for listener in listeners:
            try:
                listener(message)
            except Exception:
                log.exception("an application listener failed")

    # -- subscribing -----------------------------------------------------------------------------

    def subscribe_events(
        self,
        type_id: str = "+",
        device_id: str = "+",
        event: str = "+",
        fmt: str = "+",
        qos: int = 0,
    ) -> str:
        """Subscribe to device events (``+`` matches any); returns the filter.

        Made now when connected (blocking until granted) and again after every reconnect.

        Raises:
            IdentityError: a ``+`` for the type or device on Quickstart.
        """
        check_quickstart(self.identity.org, ids=(type_id, device_id))
        topic = grammar.event_filter(type_id, device_id, event, fmt)
        self._connection.subscribe([(topic, qos)])
        return topic

    def subscribe_device_status(self, type_id: str = "+", device_id: str = "+") -> str:
        """Subscribe to the platform's device status (``mon``) messages; returns the filter."""
        check_quickstart(self.identity.org, ids=(type_id, device_id))
        topic = grammar.device_status_filter(type_id, device_id)
        self._connection.subscribe([(topic, 0)])  # the platform sends mon at QoS 0
        return topic

    def subscribe_app_status(self, app_id: str = "+") -> str:
        """Subscribe to applications' status (``iot-2/app/<appId>/mon``); returns the filter."""
        check_quickstart(self.identity.org, ids=(app_id,))
        topic = grammar.app_status_topic(app_id)
        self._connection.subscribe([(topic, 0)])
        return topic

    # -- publishing ------------------------------------------------------------------------------

    def publish_command(
        self,
        device: DeviceIdentity,
        command: str,
        data: object = None,
        fmt: str = "json",
        qos: int = 1,
    ) -> str:
        """Publish a command to ``device``; returns its topic once the broker has it.

        ``data``: ``bytes`` are sent as they are, a ``str`` as UTF-8 with a non-JSON format,
        anything else as JSON.

        Raises:
            IdentityError: on Quickstart (no commands there).
            ValueError: ``command`` or ``fmt`` cannot be a topic level, or the device's ids
                are invalid.
            AppClientError: not connected, or the broker refused it.
        """
        check_quickstart(self.identity.org, command=True)
        _check_device(device)
        _check_level("command", command)
        _check_level("format", fmt)
        topic = grammar.command_topic(device, command, fmt)
        self._connection.publish(topic, encode(data, fmt), qos)
        return topic

    def publish_event(
        self,
        device: DeviceIdentity,
        event: str,
        data: object = None,
        fmt: str = "json",
        qos: int = 0,
    ) -> str:
        """Publish an event as if from ``device`` (applications may, §2.3); returns its topic."""
        _check_device(device)
        _check_level("event", event)
        _check_level("format", fmt)
        topic = grammar.event_topic(device, event, fmt)
        self._connection.publish(topic, encode(data, fmt), qos)
        return topic

    def dm_request(
        self,
        device: DeviceIdentity,
        suffix: str,
        d: Any = None,
        timeout: float = 10,
        *,
        req_id: str | None = None,
    ) -> dict[str, Any]:
        """Send a DM request to the gateway managing ``device`` and return its answer.

        Publishes ``{"reqId": ..., "d": d}`` on ``iotdm-1/type/T/id/D/<suffix>`` and waits for
        the answer with the same reqId on ``iotdevice-1/type/T/id/D/response``. The platform
        allows this only where the organization does; the emulator always does.

        Raises:
            IdentityError: on Quickstart (no device management there).
            ValueError: an invalid device or suffix.
            TimeoutError: no answer within ``timeout`` seconds.
            AppClientError: not connected, or the broker refused it.
        """
        check_quickstart(self.identity.org, dm=True)
        _check_device(device)
        if not all(grammar.is_valid_level(level) for level in suffix.split("/")):
            raise ValueError(f"DM request {suffix!r} is not a valid topic suffix")
        answers = grammar.dm_device_topic(device, "response")
        with self._cond:
            new = answers not in self._dm_filters
            self._dm_filters.add(answers)
        if new:
            self._connection.subscribe([(answers, DM_QOS)])
        req_id = req_id or str(uuid.uuid4())
        body: dict[str, Any] = {"reqId": req_id}
        if d is not None:
            body["d"] = d
        with self._cond:
            self._waiting.add(req_id)  # before publishing: the answer may come at once
        try:
            topic = grammar.dm_platform_topic(device, suffix)
            self._connection.publish(topic, encode(body, "json"), DM_QOS)
            with self._cond:
                if not self._cond.wait_for(lambda: req_id in self._answers, timeout):
                    raise TimeoutError(
                        f"no answer to {suffix} (reqId {req_id}) for "
                        f"{device.type_id}:{device.device_id} within {timeout:g} s"
                    )
                answer = self._answers.pop(req_id)
        finally:
            with self._cond:
                self._waiting.discard(req_id)
                self._answers.pop(req_id, None)
        decoded = answer.json()
        if not isinstance(decoded, dict):
            raise AppClientError(f"the answer to {suffix} is not a JSON object")
        return decoded


def _req_id(message: AppMessage) -> str | None:
    body = message.json()
    req_id = body.get("reqId") if isinstance(body, dict) else None
    return req_id if isinstance(req_id, str) else None
