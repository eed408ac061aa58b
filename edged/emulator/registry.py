"""The emulated platform's device registry and DM server state. Not thread-safe: the emulator
guards it with its own lock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from edged.emulator import dmrules
from edged.emulator.records import DeviceRecord, ManagedState, ReceivedEvent
from edged.model import DeviceIdentity


@dataclass(slots=True)
class _Entry:
    """A device's mutable registry entry; handed out as a frozen :class:`DeviceRecord`."""

    device: DeviceIdentity
    first_seen: float
    last_seen: float
    event_count: int = 0
    dm_count: int = 0
    last_events: dict[str, ReceivedEvent] = field(default_factory=dict)
    dm: ManagedState = field(default_factory=ManagedState)

    def freeze(self) -> DeviceRecord:
        return DeviceRecord(
            self.device,
            self.first_seen,
            self.last_seen,
            self.event_count,
            self.dm_count,
            dict(self.last_events),
            self.dm,
        )


class DeviceRegistry:
    """Every device seen, as the platform's auto-registration would have created it."""

    def __init__(self) -> None:
        self._entries: dict[DeviceIdentity, _Entry] = {}

    def _touch(self, device: DeviceIdentity, at: float) -> _Entry:
        entry = self._entries.get(device)
        if entry is None:
            entry = self._entries[device] = _Entry(device, first_seen=at, last_seen=at)
        elif at > entry.last_seen:
            entry.last_seen = at
        return entry

    def saw_event(self, event: ReceivedEvent) -> None:
        """Count an accepted event and remember it as the device's last of that name."""
        entry = self._touch(event.device, event.received_at)
        entry.event_count += 1
        entry.last_events[event.event] = event

    def saw_dm(self, device: DeviceIdentity, at: float) -> None:
        """Count an accepted DM message from ``device``."""
        self._touch(device, at).dm_count += 1

    def accept_request(
        self, device: DeviceIdentity, suffix: str, body: Mapping[str, Any], at: float
    ) -> None:
        """Apply the effect of a DM request the emulated server answered with a 2xx code."""
        entry = self._touch(device, at)
        entry.dm = apply_request(entry.dm, suffix, body, at)

    def get(self, device: DeviceIdentity) -> DeviceRecord | None:
        """The record of ``device``, ``None`` when never seen."""
        entry = self._entries.get(device)
        return entry.freeze() if entry is not None else None

    def snapshot(self) -> dict[DeviceIdentity, DeviceRecord]:
        """A record of every device."""
        return {device: entry.freeze() for device, entry in self._entries.items()}

    def clear(self) -> None:
        """Forget every device."""
        self._entries.clear()


def apply_request(
    state: ManagedState, suffix: str, body: Mapping[str, Any], at: float
) -> ManagedState:
    """The DM state after the server accepted ``body`` on ``suffix`` (PROTOCOL.md §4.5-4.7)."""
    d = body.get("d")
    effect = _EFFECTS.get(suffix)
    return effect(state, d if isinstance(d, dict) else {}, at) if effect is not None else state


def _manage(state: ManagedState, d: dict[str, Any], at: float) -> ManagedState:
    lifetime = d.get("lifetime", 0)
    lifetime = lifetime if dmrules.is_int(lifetime) and lifetime > 0 else 0
    supports = d.get("supports")
    device_info = d.get("deviceInfo")
    metadata = d.get("metadata")
    return replace(
        state,
        managed=True,
        lifetime=lifetime,
        managed_at=at,
        expires_at=at + lifetime if lifetime else None,
        supports=supports if isinstance(supports, dict) else {},
        # deviceInfo and metadata replace the stored values only when sent
        device_info=device_info if isinstance(device_info, dict) else state.device_info,
        metadata=metadata if isinstance(metadata, dict) else state.metadata,
    )


def _add_error_code(state: ManagedState, d: dict[str, Any], at: float) -> ManagedState:
    code = d.get("errorCode")
    if not isinstance(code, int) or isinstance(code, bool):
        return state
    return replace(state, error_codes=(*state.error_codes, code))


_Effect = Callable[[ManagedState, dict[str, Any], float], ManagedState]
_EFFECTS: dict[str, _Effect] = {
    dmrules.MANAGE: _manage,
    dmrules.UNMANAGE: lambda state, d, at: replace(state, managed=False, expires_at=None),
    dmrules.LOCATION: lambda state, d, at: replace(state, location=dict(d)),
    dmrules.ADD_ERROR_CODE: _add_error_code,
    dmrules.CLEAR_ERROR_CODES: lambda state, d, at: replace(state, error_codes=()),
    dmrules.ADD_LOG: lambda state, d, at: replace(state, logs=(*state.logs, dict(d))),
    dmrules.CLEAR_LOG: lambda state, d, at: replace(state, logs=()),
}
