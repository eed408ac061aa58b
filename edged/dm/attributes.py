"""What the platform may read, write and observe of each managed device, kept across restarts.

Each managed device has four attributes (PROTOCOL.md 4.8): ``location``, ``metadata``,
``deviceInfo`` and ``mgmt.firmware`` (``{"state": 0, "updateStatus": 0}`` until the first
firmware request; its state machine is :mod:`edged.dm.firmware`). Observed names may also be
sub-fields (``mgmt.firmware.state``).

Two sources write them. The gateway (config, the system, a GPS fix) sets a *local* value; the
platform's ``device/update`` sets an *override*. An override holds, across restarts, until the
local value it replaced changes (a config edit, a software upgrade): then the local value wins
again. So the platform's edit survives a restart, and an operator's config edit survives the
platform's earlier edit.

:class:`DMState` is the whole persisted document: these attributes with what is observed, the
devices managed last time (so one dropped from the config is unmanaged at the next start), and
a gateway reboot or factory reset in progress.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from edged.dm.requests import WRITABLE
from edged.model import DeviceIdentity, JSONValue
from edged.topics import is_valid_id

FORMAT = 1
FIRMWARE_PLACEHOLDER: dict[str, JSONValue] = {"state": 0, "updateStatus": 0}
MAX_OBSERVED = 64


def _empty(name: str) -> JSONValue:
    return copy.deepcopy(FIRMWARE_PLACEHOLDER) if name == "mgmt.firmware" else None


@dataclass
class DeviceAttributes:
    """One device's attributes: current values, the local values overridden, what is observed."""

    values: dict[str, JSONValue] = field(default_factory=dict)
    bases: dict[str, JSONValue] = field(default_factory=dict)
    """For each overridden name, the local value the platform's override replaced."""
    observed: list[str] = field(default_factory=list)
    job: dict[str, Any] = field(default_factory=dict)
    """A firmware install in progress: ``{"from": the version running when it started}``."""

    def value(self, name: str) -> JSONValue:
        """A top-level attribute (its empty value when never set)."""
        return self.values.get(name, _empty(name))

    def read(self, name: str) -> tuple[bool, JSONValue]:
        """``(found, value)`` for an attribute or a dotted sub-field of one."""
        for top in WRITABLE:
            if name == top:
                value = self.value(top)
                return value is not None, value
            if name.startswith(f"{top}."):
                value = self.value(top)
                for key in name[len(top) + 1 :].split("."):
                    if not isinstance(value, dict) or key not in value:
                        return False, None
                    value = value[key]
                return True, value
        return False, None

    def set_local(self, name: str, value: JSONValue) -> bool:
        """Set a value the gateway knows; True when the current value changed."""
        if name in self.bases:
            if self.bases[name] == value:
                return False  # the platform's override still stands
            del self.bases[name]
        changed = bool(self.value(name) != value)
        self.values[name] = copy.deepcopy(value)
        return changed

    def set_override(self, name: str, value: JSONValue) -> None:
        """Set a value the platform wrote (``device/update``)."""
        if name not in self.bases:
            self.bases[name] = self.value(name)
        self.values[name] = copy.deepcopy(value)

    def to_json(self) -> dict[str, Any]:
        """The persisted form."""
        document = {"values": self.values, "bases": self.bases, "observed": self.observed}
        return {**document, "job": self.job} if self.job else document

    @classmethod
    def from_json(cls, data: object) -> DeviceAttributes:
        """Read the persisted form; anything malformed is dropped, never fatal."""
        if not isinstance(data, dict):
            return cls()
        values, bases, observed = data.get("values"), data.get("bases"), data.get("observed")
        return cls(
            job=_dict(data.get("job")),
            values={k: v for k, v in _dict(values).items() if k in WRITABLE},
            bases={k: v for k, v in _dict(bases).items() if k in WRITABLE},
            observed=[n for n in observed if isinstance(n, str)][:MAX_OBSERVED]
            if isinstance(observed, list)
            else [],
        )


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def affected(observed: Iterable[str], changed: str) -> list[str]:
    """The observed names a change of top-level attribute ``changed`` touches."""
    return [n for n in observed if n == changed or n.startswith(f"{changed}.")]


class DMState:
    """The agent's persisted document, held in memory; :meth:`to_json` is what is saved."""

    def __init__(self) -> None:
        self.devices: dict[DeviceIdentity, DeviceAttributes] = {}
        self.managed: set[DeviceIdentity] = set()
        """Devices a manage was sent for and no unmanage acknowledged since."""
        self.pending_action: dict[str, Any] | None = None
        """A gateway reboot or factory reset started: ``{"action", "reqId", "at"}``."""

    def attributes(self, device: DeviceIdentity) -> DeviceAttributes:
        """The device's attributes (created empty on first use)."""
        found = self.devices.get(device)
        if found is None:
            found = self.devices[device] = DeviceAttributes()
        return found

    def update(self, device: DeviceIdentity, fields: Iterable[tuple[str, JSONValue]]) -> list[str]:
        """Apply a platform update; nothing is applied when any field is unknown (returned)."""
        fields = list(fields)
        unknown = [name for name, _ in fields if name not in WRITABLE]
        if unknown:
            return unknown
        attributes = self.attributes(device)
        for name, value in fields:
            attributes.set_override(name, value)
        return []

    def observe(self, device: DeviceIdentity, names: Iterable[str]) -> tuple[list[Any], list[str]]:
        """Start observing; ``([{"field", "value"}...], [])`` or ``([], missing names)``."""
        attributes = self.attributes(device)
        found: list[Any] = []
        missing: list[str] = []
        for name in names:
            ok, value = attributes.read(name)
            if ok:
                found.append({"field": name, "value": value})
            else:
                missing.append(name)
        new = [f["field"] for f in found if f["field"] not in attributes.observed]
        if missing or len(attributes.observed) + len(new) > MAX_OBSERVED:
            return [], missing or new
        attributes.observed.extend(new)
        return found, []

    def cancel(self, device: DeviceIdentity, names: Iterable[str]) -> None:
        """Stop observing (names not observed are ignored)."""
        attributes = self.attributes(device)
        gone = set(names)
        attributes.observed = [n for n in attributes.observed if n not in gone]

    def forget(self, device: DeviceIdentity) -> None:
        """Drop everything about a device that is no longer managed."""
        self.devices.pop(device, None)
        self.managed.discard(device)

    def to_json(self) -> dict[str, Any]:
        """The document saved to the state file."""
        return {
            "format": FORMAT,
            "devices": {_key(d): a.to_json() for d, a in sorted(self.devices.items())},
            "managed": sorted(_key(d) for d in self.managed),
            "pending_action": self.pending_action,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> DMState:
        """Read a saved document (an unknown format or bad entries are skipped)."""
        state = cls()
        if document.get("format") != FORMAT:
            return state
        for key, data in _dict(document.get("devices")).items():
            device = _device(key)
            if device is not None:
                state.devices[device] = DeviceAttributes.from_json(data)
        managed = document.get("managed")
        for key in managed if isinstance(managed, list) else []:
            device = _device(key)
            if device is not None:
                state.managed.add(device)
        pending = document.get("pending_action")
        if isinstance(pending, dict) and isinstance(pending.get("action"), str):
            state.pending_action = pending
        return state


def _key(device: DeviceIdentity) -> str:
    return f"{device.type_id}/{device.device_id}"


def _device(key: object) -> DeviceIdentity | None:
    if not isinstance(key, str) or key.count("/") != 1:
        return None
    type_id, device_id = key.split("/")
    if not (is_valid_id(type_id) and is_valid_id(device_id)):
        return None
    return DeviceIdentity(type_id, device_id)
