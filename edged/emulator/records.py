"""What the emulator records: immutable values handed to tests, listeners and the renderer."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, TypeAlias

from edged.appclient import grammar
from edged.model import DeviceIdentity


class Violation(NamedTuple):
    """A gateway publication that breaks one of the platform's rules.

    ``rule`` is one of the names in :mod:`edged.emulator.rules` (``topic``, ``payload-size``,
    ``retain``, ``qos``, ``json``, ``utf8``, ``dm-json``, ``dm-shape``, ``dm-lifetime``,
    ``dm-reqid``); ``detail`` says what exactly was wrong.
    """

    topic: str
    rule: str
    detail: str


@dataclass(frozen=True, slots=True)
class Publication:
    """One message a gateway published, as the emulator received it.

    ``parsed`` is the parsed topic when it is an event or a gateway DM topic, else ``None``.
    ``data`` is the decoded JSON body when the format is JSON (events with ``fmt/json`` and every
    DM message) and it decoded, else ``None``. ``qos`` and ``retain`` are as published (the
    emulator subscribes at QoS 2 with retain-as-published).
    """

    topic: str
    parsed: grammar.EventTopic | grammar.DMTopic | None
    payload: bytes
    data: Any
    qos: int
    retain: bool
    received_at: float
    violations: tuple[Violation, ...] = ()


@dataclass(frozen=True, slots=True)
class ReceivedEvent:
    """An event published on a valid ``iot-2/type/T/id/D/evt/E/fmt/F`` topic."""

    device: DeviceIdentity
    event: str
    format: str
    topic: str
    payload: bytes
    data: Any
    qos: int
    retain: bool
    received_at: float

    @property
    def values(self) -> Any:
        """The reading's values: ``data["d"]`` for edged's ``{"ts", "d"}`` body, else ``data``."""
        if isinstance(self.data, dict) and isinstance(self.data.get("d"), dict):
            return self.data["d"]
        return self.data

    @property
    def is_command_result(self) -> bool:
        """True for a ``cmdResult`` event (edged's answer to a command)."""
        return self.event == "cmdResult"


Direction: TypeAlias = Literal["up", "down"]
"""``up``: gateway to platform (``iotdevice-1``); ``down``: platform to gateway (``iotdm-1``)."""


@dataclass(frozen=True, slots=True)
class DMMessage:
    """One device-management message in either direction.

    ``body`` is the decoded JSON object (``None`` when the payload was not a JSON object);
    ``req_id`` is its ``reqId`` when that is a string.
    """

    direction: Direction
    device: DeviceIdentity
    suffix: str
    topic: str
    payload: bytes
    body: Mapping[str, Any] | None
    req_id: str | None
    at: float

    @property
    def rc(self) -> int | None:
        """The return code of a ``response`` message, else ``None``."""
        rc = self.body.get("rc") if self.body is not None else None
        return rc if isinstance(rc, int) and not isinstance(rc, bool) else None

    @property
    def d(self) -> Any:
        """The ``d`` member of the body, ``None`` when absent."""
        return self.body.get("d") if self.body is not None else None


@dataclass(frozen=True, slots=True)
class DMExchange:
    """A DM request and its response (``None`` when none came or none was sent).

    ``initiator`` is ``gateway`` for the gateway's own requests (manage, location, ...) that the
    emulator answered, ``platform`` for requests the emulator sent (:meth:`dm_request`).
    """

    initiator: Literal["gateway", "platform"]
    request: DMMessage
    response: DMMessage | None

    @property
    def rc(self) -> int | None:
        """The response's return code, ``None`` without a response."""
        return self.response.rc if self.response is not None else None


@dataclass(frozen=True, slots=True)
class SentCommand:
    """A command the emulator published to a device."""

    device: DeviceIdentity
    command: str
    format: str
    topic: str
    payload: bytes
    data: Any
    qos: int
    at: float


@dataclass(frozen=True, slots=True)
class SentNotify:
    """A gateway notify message the emulator published."""

    gateway: DeviceIdentity
    topic: str
    body: Mapping[str, Any]
    at: float


DropReason: TypeAlias = Literal["registration-failed", "failure-window"]
"""Why the emulated platform dropped a gateway publication (see :mod:`edged.emulator.autoreg`)."""


@dataclass(frozen=True, slots=True)
class DroppedPublication:
    """A gateway publication the platform dropped because its device could not be registered.

    ``reason`` is ``registration-failed`` for the message whose registration attempt failed and
    ``failure-window`` for a message that came while the platform does not retry that device.
    ``message`` is the registration error (a text of :mod:`edged.emulator.notify`); ``at`` is
    when it arrived (``time.time()``).
    """

    device: DeviceIdentity
    topic: str
    reason: DropReason
    message: str
    at: float


@dataclass(frozen=True, slots=True)
class ManagedState:
    """A device's device-management state as the emulated DM server holds it.

    ``expires_at`` is when the device turns dormant without a new manage (``None``: lifetime 0,
    never). ``location``, ``error_codes`` and ``logs`` are what the gateway last reported.
    """

    managed: bool = False
    lifetime: int = 0
    managed_at: float | None = None
    expires_at: float | None = None
    supports: Mapping[str, Any] = field(default_factory=dict)
    device_info: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    location: Mapping[str, Any] | None = None
    error_codes: tuple[int, ...] = ()
    logs: tuple[Mapping[str, Any], ...] = ()

    def is_managed(self, now: float) -> bool:
        """Managed and not dormant at ``now`` (the lifetime has not run out)."""
        return self.managed and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A device the emulator has seen, as the platform's auto-registration would create it."""

    device: DeviceIdentity
    first_seen: float
    last_seen: float
    event_count: int = 0
    dm_count: int = 0
    last_events: Mapping[str, ReceivedEvent] = field(default_factory=dict)
    dm: ManagedState = field(default_factory=ManagedState)


Record: TypeAlias = ReceivedEvent | DMExchange | SentCommand | SentNotify | Violation
"""What listeners (e.g. the terminal renderer) are told about, in the order it happened."""
