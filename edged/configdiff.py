"""What changed between the running config and a newly read one, and what a reload may apply.

Pure: compares two validated :class:`~edged.config.Config` objects and touches nothing. The
reload (:mod:`edged.reload`) applies what :func:`diff_configs` says may change live and logs
the rest as needing a restart. Which setting falls where is documented in docs/service.md
("Reload").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from edged.config import Config, ConfiguredDevice
from edged.model import DeviceIdentity

LIVE_PLATFORM_FIELDS = frozenset({"qos"})
"""``platform.*`` settings applied at once (the QoS of later readings)."""
RESTART_SECTIONS = ("platform", "storage", "registration", "managed", "control")
"""Sections whose settings are read once at start; a change is logged and not applied."""


@dataclass(frozen=True)
class ConfigDiff:
    """The differences between two configs, grouped by what a reload does with them."""

    added: frozenset[DeviceIdentity] = frozenset()
    removed: frozenset[DeviceIdentity] = frozenset()
    changed: frozenset[DeviceIdentity] = frozenset()
    """Devices still configured whose adapter, event or adapter section differ."""
    manage_changed: frozenset[DeviceIdentity] = frozenset()
    """Devices whose ``manage:`` options differ (added or removed managed devices included)."""
    adapters: frozenset[str] = frozenset()
    """Adapter types with a changed ``adapters.<name>`` section, or newly or no longer used."""
    live: tuple[str, ...] = ()
    """Settings applied at once, as ``section.key``."""
    restart: tuple[str, ...] = ()
    """Settings that only take effect at the next start, as ``section.key``."""

    @property
    def devices_changed(self) -> bool:
        """True when any device or adapter setting differs."""
        return bool(self.added or self.removed or self.changed or self.adapters)

    @property
    def empty(self) -> bool:
        """True when nothing at all differs."""
        return not (self.devices_changed or self.manage_changed or self.live or self.restart)

    def summary(self) -> str:
        """One line for the log: what a reload applied and what waits for a restart."""
        parts = []
        for label, devices in (
            ("added", self.added),
            ("removed", self.removed),
            ("changed", self.changed),
        ):
            if devices:
                parts.append(f"{len(devices)} device(s) {label} ({_names(devices)})")
        if self.manage_changed:
            parts.append(f"device management of {_names(self.manage_changed)}")
        if self.adapters:
            parts.append(f"adapter settings of {', '.join(sorted(self.adapters))}")
        if self.live:
            parts.append(f"applied {', '.join(self.live)}")
        if self.restart:
            parts.append(f"needs a restart: {', '.join(self.restart)}")
        return "; ".join(parts) or "no changes"


def _names(devices: Iterable[DeviceIdentity], limit: int = 10) -> str:
    names = sorted(str(device) for device in devices)
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def model_changes(prefix: str, old: BaseModel, new: BaseModel) -> list[str]:
    """``prefix.key`` for each top-level field that differs between two models of one type."""
    return [
        f"{prefix}.{name}"
        for name in type(old).model_fields
        if getattr(old, name) != getattr(new, name)
    ]


def _device_key(device: ConfiguredDevice) -> tuple[str, str, Any]:
    """What a device's runner is built from (not its place in the file, not ``manage:``)."""
    return device.adapter, device.event, device.section


def diff_configs(old: Config, new: Config) -> ConfigDiff:
    """Compare the running config ``old`` with ``new`` (both validated)."""
    before = {device.identity: device for device in old.devices}
    after = {device.identity: device for device in new.devices}
    added = after.keys() - before.keys()
    removed = before.keys() - after.keys()
    kept = before.keys() & after.keys()
    changed = {d for d in kept if _device_key(before[d]) != _device_key(after[d])}
    manage_changed = {
        device
        for device in before.keys() | after.keys()
        if _manage_of(before, device) != _manage_of(after, device)
    }
    adapters = _adapter_changes(old.adapter_settings, new.adapter_settings)
    adapters &= set(old.adapters_in_use) | set(new.adapters_in_use)
    live: list[str] = []
    restart: list[str] = []
    for name in ("logging", "status", "commands"):
        live.extend(model_changes(name, getattr(old, name), getattr(new, name)))
    for field in model_changes("platform", old.platform, new.platform):
        (live if field.removeprefix("platform.") in LIVE_PLATFORM_FIELDS else restart).append(field)
    if old.token.reveal() != new.token.reveal():
        restart.append("platform.token")
    for name in RESTART_SECTIONS[1:]:
        restart.extend(model_changes(name, getattr(old, name), getattr(new, name)))
    return ConfigDiff(
        added=frozenset(added),
        removed=frozenset(removed),
        changed=frozenset(changed),
        manage_changed=frozenset(manage_changed),
        adapters=frozenset(adapters),
        live=tuple(live),
        restart=tuple(restart),
    )


def _manage_of(devices: Mapping[DeviceIdentity, ConfiguredDevice], device: DeviceIdentity) -> Any:
    entry = devices.get(device)
    return None if entry is None else entry.manage


def _adapter_changes(old: Mapping[str, BaseModel], new: Mapping[str, BaseModel]) -> set[str]:
    return {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}


def effective_config(old: Config, new: Config) -> Config:
    """``new`` with every setting that needs a restart kept at its running value.

    The result is what the daemon runs with after a reload, so the next reload again reports
    a restart-only setting that still differs from the file.
    """
    live_platform = {name: getattr(new.platform, name) for name in LIVE_PLATFORM_FIELDS}
    return dataclasses.replace(
        new,
        platform=old.platform.model_copy(update=live_platform),
        token=old.token,
        storage=old.storage,
        registration=old.registration,
        managed=old.managed,
        control=old.control,
    )
