"""What an application receives, classified by its topic (PROTOCOL.md §2.3, §4)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from edged.appclient import grammar
from edged.model import DeviceIdentity

Kind = Literal["event", "command", "device-status", "app-status", "dm", "notify", "other"]


@dataclass(frozen=True, slots=True)
class AppMessage:
    """One received message.

    Attributes:
        topic: The topic it arrived on.
        payload: Its bytes, as received.
        kind: ``event``, ``command``, ``device-status`` (a device's ``mon``), ``app-status``
            (an application's ``mon``), ``dm`` (either direction), ``notify`` or ``other``.
        device: The device it is about (``None`` for ``app-status`` and ``other``).
        name: The event or command name, the DM suffix, or the appId of an ``app-status``.
        format: The ``fmt`` level of an event or command.
        qos: The QoS it was delivered with.
        retain: The retain flag (the platform retains device Connect/Disconnect ``mon``).
        received_at: ``time.time()`` when it arrived.
    """

    topic: str
    payload: bytes
    kind: Kind
    device: DeviceIdentity | None
    name: str
    format: str
    qos: int
    retain: bool
    received_at: float

    def json(self) -> Any:
        """The payload decoded as JSON, or ``None`` when it is not JSON (or is ``null``)."""
        try:
            return json.loads(self.payload)
        except (ValueError, UnicodeDecodeError):
            return None

    @property
    def to_device(self) -> bool:
        """For ``dm``: sent by the platform (``iotdm-1``) rather than by the gateway."""
        return self.topic.startswith(grammar.DM_TO_GATEWAY + "/")


def classify(
    topic: str, payload: bytes, qos: int = 0, retain: bool = False, at: float = 0.0
) -> AppMessage:
    """An :class:`AppMessage` for a message received on ``topic``."""
    parsed = grammar.parse(topic)
    kind: Kind = "other"
    device: DeviceIdentity | None = None
    name = fmt = ""
    match parsed:
        case grammar.EventTopic(device=device, event=name, format=fmt):
            kind = "event"
        case grammar.CommandTopic(device=device, command=name, format=fmt):
            kind = "command"
        case grammar.DeviceStatusTopic(device=device):
            kind = "device-status"
        case grammar.AppStatusTopic(app_id=name):
            kind = "app-status"
        case grammar.DMTopic(device=device, suffix=name):
            kind = "dm"
        case grammar.NotifyTopic(gateway=device):
            kind = "notify"
    return AppMessage(topic, payload, kind, device, name, fmt, qos, retain, at)
