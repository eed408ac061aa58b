"""Domain types shared by the bridge, the uplink and the adapters.

Adapters know hardware and nothing of MQTT: they produce :class:`Reading` objects and carry out
:class:`Command` objects. Everything here is an immutable value.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

JSONValue: TypeAlias = Any
"""Anything orjson can encode: dict, list, str, int, float, bool, None."""


@dataclass(frozen=True, slots=True, order=True)
class DeviceIdentity:
    """A device as the platform knows it: ``typeId`` and ``deviceId``."""

    type_id: str
    device_id: str

    def __str__(self) -> str:
        return f"{self.type_id}/{self.device_id}"


class DeviceState(enum.StrEnum):
    """What the gateway knows about an attached device's link."""

    STARTING = "starting"
    ONLINE = "online"
    OFFLINE = "offline"  # configured and expected, but not answering / not heard
    DOWN = "down"  # its adapter failed; being restarted with backoff


@dataclass(frozen=True, slots=True)
class Reading:
    """Values read from one device at one moment, published as one event.

    ``values`` must be JSON-encodable. ``timestamp`` is seconds since the epoch (``time.time()``).
    """

    device: DeviceIdentity
    event: str
    values: Mapping[str, JSONValue]
    timestamp: float


@dataclass(frozen=True, slots=True)
class Command:
    """A command the platform sent to the gateway or to one attached device.

    ``data`` is the decoded JSON body when the format is ``json`` and the body parsed, else
    ``None``; ``payload`` is always the raw body. ``correlation_id`` is the ``reqId`` (or
    ``correlationId``) the sender put in a JSON body, echoed in the result.
    """

    device: DeviceIdentity
    name: str
    format: str
    payload: bytes
    data: JSONValue = None
    correlation_id: str | None = None


class CommandStatus(enum.StrEnum):
    """How a command ended; carried in every command result event."""

    OK = "ok"
    REJECTED = "rejected"  # bad request: nothing was done
    FAILED = "failed"  # attempted, the hardware or adapter failed
    UNSUPPORTED = "unsupported"  # unknown command or device
    TIMEOUT = "timeout"  # no outcome within the command timeout


@dataclass(frozen=True, slots=True)
class CommandResult:
    """The outcome of a :class:`Command`, published as a ``cmdResult`` event."""

    command: Command
    status: CommandStatus
    error: str | None = None
    data: Mapping[str, JSONValue] = field(default_factory=dict)


class OutgoingMessage(NamedTuple):
    """A message for the uplink: topic, payload and QoS (never retained)."""

    topic: str
    payload: bytes
    qos: int
