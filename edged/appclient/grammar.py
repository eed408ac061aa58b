"""The platform side's topic grammar and client ids (PROTOCOL.md §1.4, §2, §4).

Shared by the application client (:mod:`edged.appclient`) and the platform emulator
(:mod:`edged.emulator`), which is the test oracle for edged's uplink: so the platform side keeps
its own grammar, written from the protocol rather than taken from the gateway (``edged.topics``).
A mistake made once in both the gateway's builder and its parser would otherwise pass every
end-to-end test. ``tests/unit/emulator/test_independence.py`` enforces that the platform side
imports no gateway module.

Pure functions, no I/O. The topics (``T``/``D``: typeId/deviceId of the gateway or an attached
device):

========================================  ===========================  =====================
topic                                     sent by                      §
========================================  ===========================  =====================
``iot-2/type/T/id/D/evt/<event>/fmt/<f>`` the gateway (events)         2.1
``iot-2/type/T/id/D/cmd/<cmd>/fmt/<f>``   the platform (commands)      2.1
``iot-2/type/T/id/D/notify``              the platform (errors)        2.1, 3.2
``iot-2/type/T/id/D/mon``                 the platform (device status) 2.1, 2.3
``iot-2/app/<appId>/mon``                 the platform (app status)    2.3
``iotdevice-1/type/T/id/D/<suffix>``      the gateway (DM)             4.1, 4.2
``iotdm-1/type/T/id/D/<suffix>``          the platform (DM)            4.1, 4.2
========================================  ===========================  =====================
"""

from __future__ import annotations

import string
from dataclasses import dataclass

from edged.model import DeviceIdentity

__all__ = [
    "DM_TO_GATEWAY",
    "DM_TO_PLATFORM",
    "EVENTS_ROOT",
    "ID_CHARACTERS",
    "MAX_ID_LENGTH",
    "MAX_TOPIC_BYTES",
    "WILDCARDS",
    "AppStatusTopic",
    "CommandTopic",
    "DMTopic",
    "DeviceStatusTopic",
    "EventTopic",
    "NotifyTopic",
    "Topic",
    "app_status_topic",
    "application_client_id",
    "command_filter",
    "command_topic",
    "device_status_filter",
    "dm_device_topic",
    "dm_platform_topic",
    "event_filter",
    "event_topic",
    "gateway_client_id",
    "is_valid_id",
    "is_valid_level",
    "notify_topic",
    "parse",
    "scalable_client_id",
]

MAX_ID_LENGTH = 36
"""typeId, deviceId and appId: at most 36 characters (§1.4)."""

ID_CHARACTERS = frozenset(string.ascii_letters + string.digits + "-_.")
"""The only characters allowed in a typeId, deviceId or appId (§1.4)."""

MAX_TOPIC_BYTES = 65535
"""MQTT: a topic name is at most 65535 bytes of UTF-8."""

WILDCARDS = frozenset("+#")
"""MQTT: wildcards belong in subscription filters, never in a topic a message is published on."""

_NOT_IN_A_LEVEL = WILDCARDS | {"/", "\x00"}

EVENTS_ROOT = "iot-2"
DM_TO_PLATFORM = "iotdevice-1"
DM_TO_GATEWAY = "iotdm-1"


def is_valid_id(value: str) -> bool:
    """True when ``value`` can be a typeId, deviceId or appId: 1-36 of ``A-Za-z0-9-_.``."""
    return 0 < len(value) <= MAX_ID_LENGTH and ID_CHARACTERS.issuperset(value)


def is_valid_level(value: str) -> bool:
    """True when ``value`` can be an event, command or format level of a published topic.

    The protocol leaves these free text (§2.1); MQTT requires one non-empty level without
    wildcards, ``/`` or U+0000, encodable as UTF-8.
    """
    if not value or not _NOT_IN_A_LEVEL.isdisjoint(value):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


# -- builders -------------------------------------------------------------------------------------


def application_client_id(org: str, app_id: str) -> str:
    """An application's MQTT client id (§1.4)."""
    return "a:" + org + ":" + app_id


def scalable_client_id(org: str, app_id: str, instance_id: str | None = None) -> str:
    """A scalable application's client id (§1.4): ``A:<org>:<appId>``, every member the same
    (non-durable shared), or ``A:<org>:<appId>:<instanceId>`` (mixed durability)."""
    parts = ["A", org, app_id] if instance_id is None else ["A", org, app_id, instance_id]
    return ":".join(parts)


def gateway_client_id(org: str, gateway: DeviceIdentity) -> str:
    """A gateway's MQTT client id (§1.4)."""
    return ":".join(("g", org, gateway.type_id, gateway.device_id))


def _device_topic(root: str, device: DeviceIdentity, *rest: str) -> str:
    return "/".join((root, "type", device.type_id, "id", device.device_id, *rest))


def event_topic(device: DeviceIdentity, event: str, fmt: str = "json") -> str:
    """The topic an event of ``device`` arrives on."""
    return _device_topic(EVENTS_ROOT, device, "evt", event, "fmt", fmt)


def command_topic(device: DeviceIdentity, command: str, fmt: str = "json") -> str:
    """The topic the platform sends a command to ``device`` on."""
    return _device_topic(EVENTS_ROOT, device, "cmd", command, "fmt", fmt)


def command_filter(device: DeviceIdentity) -> str:
    """The subscription a gateway makes for every command to ``device``."""
    return _device_topic(EVENTS_ROOT, device, "cmd", "+", "fmt", "+")


def _filter(root: str, type_id: str, device_id: str, *rest: str) -> str:
    return "/".join((root, "type", type_id, "id", device_id, *rest))


def event_filter(type_id: str = "+", device_id: str = "+", event: str = "+", fmt: str = "+") -> str:
    """A subscription to device events; ``+`` in any level matches every value (§2.3)."""
    return _filter(EVENTS_ROOT, type_id, device_id, "evt", event, "fmt", fmt)


def device_status_filter(type_id: str = "+", device_id: str = "+") -> str:
    """A subscription to the platform's device status (``mon``) messages (§2.3)."""
    return _filter(EVENTS_ROOT, type_id, device_id, "mon")


def app_status_topic(app_id: str = "+") -> str:
    """An application's status (``mon``) topic, or with ``+`` the filter for all of them."""
    return "/".join((EVENTS_ROOT, "app", app_id, "mon"))


def notify_topic(gateway: DeviceIdentity) -> str:
    """The topic the platform tells ``gateway`` about its refused requests on (§3.2)."""
    return _device_topic(EVENTS_ROOT, gateway, "notify")


def dm_platform_topic(device: DeviceIdentity, suffix: str) -> str:
    """A DM message from the platform about ``device``, e.g. suffix ``response``."""
    return _device_topic(DM_TO_GATEWAY, device, suffix)


def dm_device_topic(device: DeviceIdentity, suffix: str) -> str:
    """A DM message from the gateway about ``device``, e.g. suffix ``mgmt/manage``."""
    return _device_topic(DM_TO_PLATFORM, device, suffix)


# -- parsing --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventTopic:
    """``iot-2/type/T/id/D/evt/<event>/fmt/<format>``."""

    device: DeviceIdentity
    event: str
    format: str


@dataclass(frozen=True, slots=True)
class CommandTopic:
    """``iot-2/type/T/id/D/cmd/<command>/fmt/<format>``."""

    device: DeviceIdentity
    command: str
    format: str


@dataclass(frozen=True, slots=True)
class NotifyTopic:
    """``iot-2/type/T/id/D/notify``: ``gateway`` is the gateway told."""

    gateway: DeviceIdentity


@dataclass(frozen=True, slots=True)
class DeviceStatusTopic:
    """``iot-2/type/T/id/D/mon``."""

    device: DeviceIdentity


@dataclass(frozen=True, slots=True)
class AppStatusTopic:
    """``iot-2/app/<appId>/mon``."""

    app_id: str


@dataclass(frozen=True, slots=True)
class DMTopic:
    """``iotdevice-1/...`` (``to_device`` False) or ``iotdm-1/...`` (``to_device`` True)."""

    device: DeviceIdentity
    suffix: str
    to_device: bool


Topic = EventTopic | CommandTopic | NotifyTopic | DeviceStatusTopic | AppStatusTopic | DMTopic


def parse(topic: str) -> Topic | None:
    """Parse a topic a message was published on; ``None`` when it is none of the above.

    Every id must be valid, every event, command and format level valid, and a DM suffix made
    of valid levels. Whether a gateway may *publish* on the topic is :mod:`~.rules`' business.
    """
    if len(topic.encode("utf-8", "surrogatepass")) > MAX_TOPIC_BYTES:
        return None
    levels = topic.split("/")
    if levels[:2] == [EVENTS_ROOT, "app"]:
        valid = len(levels) == 4 and levels[3] == "mon" and is_valid_id(levels[2])
        return AppStatusTopic(levels[2]) if valid else None
    device = _device(levels)
    if device is None:
        return None
    root, rest = levels[0], levels[5:]
    if root == EVENTS_ROOT:
        return _parse_events_topic(device, rest)
    if root in (DM_TO_PLATFORM, DM_TO_GATEWAY) and all(is_valid_level(level) for level in rest):
        return DMTopic(device, "/".join(rest), to_device=root == DM_TO_GATEWAY)
    return None


def _device(levels: list[str]) -> DeviceIdentity | None:
    """The device of ``<root>/type/T/id/D/<at least one more level>``."""
    if len(levels) < 6 or levels[1] != "type" or levels[3] != "id":
        return None
    if not (is_valid_id(levels[2]) and is_valid_id(levels[4])):
        return None
    return DeviceIdentity(levels[2], levels[4])


_NAMED: dict[str, type[EventTopic] | type[CommandTopic]] = {"evt": EventTopic, "cmd": CommandTopic}


def _parse_events_topic(device: DeviceIdentity, rest: list[str]) -> Topic | None:
    if rest == ["notify"]:
        return NotifyTopic(device)
    if rest == ["mon"]:
        return DeviceStatusTopic(device)
    make = _NAMED.get(rest[0]) if len(rest) == 4 and rest[2] == "fmt" else None
    if make is None or not (is_valid_level(rest[1]) and is_valid_level(rest[3])):
        return None
    return make(device, rest[1], rest[3])
