"""Every MQTT topic edged uses is built and parsed here, and nowhere else.

Pure functions, no I/O. Topic grammar (PROTOCOL.md §2, §4):

* events:   ``iot-2/type/<T>/id/<D>/evt/<event>/fmt/<format>``
* commands: ``iot-2/type/<T>/id/<D>/cmd/<command>/fmt/<format>``
* notify:   ``iot-2/type/<gwT>/id/<gwD>/notify``
* device management: ``iotdm-1/type/<T>/id/<D>/<suffix>`` (platform to gateway) and
  ``iotdevice-1/type/<T>/id/<D>/<suffix>`` (gateway to platform).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from edged.model import DeviceIdentity

MAX_ID_LENGTH = 36
_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,36}")
# Event, command and format names: one topic level, no wildcards; kept to the same safe set.
_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,128}")


def is_valid_id(value: str) -> bool:
    """True when ``value`` is a valid typeId / deviceId (<= 36 of ``A-Za-z0-9 - _ .``)."""
    return _ID_RE.fullmatch(value) is not None


def is_valid_name(value: str) -> bool:
    """True when ``value`` can be an event, command or format topic level."""
    return _NAME_RE.fullmatch(value) is not None


def gateway_client_id(org: str, gateway: DeviceIdentity) -> str:
    """The gateway's MQTT client id, ``g:<org>:<type>:<id>``."""
    return f"g:{org}:{gateway.type_id}:{gateway.device_id}"


def application_client_id(org: str, app_id: str) -> str:
    """An application's MQTT client id, ``a:<org>:<appId>``."""
    return f"a:{org}:{app_id}"


def event_topic(device: DeviceIdentity, event: str, fmt: str = "json") -> str:
    """The topic an event of ``device`` is published on."""
    return f"iot-2/type/{device.type_id}/id/{device.device_id}/evt/{event}/fmt/{fmt}"


def command_topic(device: DeviceIdentity, command: str, fmt: str = "json") -> str:
    """The topic a command to ``device`` is published on (by the platform)."""
    return f"iot-2/type/{device.type_id}/id/{device.device_id}/cmd/{command}/fmt/{fmt}"


def command_filter(device: DeviceIdentity) -> str:
    """The subscription that receives every command for ``device``."""
    return f"iot-2/type/{device.type_id}/id/{device.device_id}/cmd/+/fmt/+"


def command_filter_for_type(type_id: str) -> str:
    """The subscription that receives every command for every device of type ``type_id``."""
    return f"iot-2/type/{type_id}/id/+/cmd/+/fmt/+"


def notify_topic(gateway: DeviceIdentity) -> str:
    """The gateway's notify topic (platform errors about the gateway's requests)."""
    return f"iot-2/type/{gateway.type_id}/id/{gateway.device_id}/notify"


def dm_request_filter(device: DeviceIdentity) -> str:
    """The subscription that receives every device-management message for ``device``."""
    return f"iotdm-1/type/{device.type_id}/id/{device.device_id}/#"


def dm_request_filter_all() -> str:
    """The subscription that receives every device-management message for any device."""
    return "iotdm-1/type/+/id/+/#"


def dm_platform_topic(device: DeviceIdentity, suffix: str) -> str:
    """A platform-to-gateway DM topic (``iotdm-1/...``), e.g. suffix ``response``."""
    return f"iotdm-1/type/{device.type_id}/id/{device.device_id}/{suffix}"


def dm_device_topic(device: DeviceIdentity, suffix: str) -> str:
    """A gateway-to-platform DM topic (``iotdevice-1/...``), e.g. suffix ``mgmt/manage``."""
    return f"iotdevice-1/type/{device.type_id}/id/{device.device_id}/{suffix}"


@dataclass(frozen=True, slots=True)
class EventTopic:
    """A parsed event topic."""

    device: DeviceIdentity
    event: str
    format: str


@dataclass(frozen=True, slots=True)
class CommandTopic:
    """A parsed command topic."""

    device: DeviceIdentity
    command: str
    format: str


@dataclass(frozen=True, slots=True)
class MalformedCommandTopic:
    """A command topic for a nameable device whose command or format level is not valid.

    The broker delivers these (``+`` matches any level, empty included); the device can still
    be told that its command was refused. ``command`` and ``format`` are the raw levels.
    """

    device: DeviceIdentity
    command: str
    format: str


@dataclass(frozen=True, slots=True)
class NotifyTopic:
    """A parsed gateway notify topic."""

    gateway: DeviceIdentity


@dataclass(frozen=True, slots=True)
class DMTopic:
    """A parsed DM topic; ``to_device`` is True for ``iotdm-1`` (platform to gateway)."""

    device: DeviceIdentity
    suffix: str
    to_device: bool


ParsedTopic = EventTopic | CommandTopic | MalformedCommandTopic | NotifyTopic | DMTopic


def _parse_iot2(device: DeviceIdentity, rest: list[str]) -> ParsedTopic | None:
    if rest == ["notify"]:
        return NotifyTopic(device)
    if len(rest) == 4 and rest[0] == "cmd" and rest[2] == "fmt":
        if is_valid_name(rest[1]) and is_valid_name(rest[3]):
            return CommandTopic(device, rest[1], rest[3])
        return MalformedCommandTopic(device, rest[1], rest[3])
    if (
        len(rest) == 4
        and rest[0] == "evt"
        and rest[2] == "fmt"
        and is_valid_name(rest[1])
        and is_valid_name(rest[3])
    ):
        return EventTopic(device, rest[1], rest[3])
    return None


def parse(topic: str) -> ParsedTopic | None:
    """Parse any topic edged knows; ``None`` when it does not follow the grammar."""
    levels = topic.split("/")
    if len(levels) < 5 or levels[1] != "type" or levels[3] != "id":
        return None
    type_id, device_id = levels[2], levels[4]
    if not (is_valid_id(type_id) and is_valid_id(device_id)):
        return None
    device = DeviceIdentity(type_id, device_id)
    root, rest = levels[0], levels[5:]
    if root == "iot-2":
        return _parse_iot2(device, rest)
    if root in ("iotdm-1", "iotdevice-1") and rest and all(rest):
        return DMTopic(device, "/".join(rest), to_device=root == "iotdm-1")
    return None
