"""The adapter contract: how hardware plugs into edged.

An :class:`Adapter` owns one piece of hardware (a serial port, a Modbus line, a Bluetooth
controller, a simulated source) and the devices on it. It runs until cancelled, hands readings
to a :class:`ReadingSink`, and carries out commands. It raises
:class:`~edged.errors.TransientAdapterError` for failures worth a quick retry and
:class:`~edged.errors.PermanentAdapterError` for ones that are not; the supervisor restarts it
with backoff either way and logs only state transitions.

Adapters know nothing of MQTT, topics or the platform: the bridge does that.
"""

from __future__ import annotations

import abc
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from edged.errors import CommandUnsupported
from edged.model import Command, DeviceIdentity, DeviceState, JSONValue, Reading

SectionT = TypeVar("SectionT")
Loc = tuple[str | int, ...]
"""A location in the config document, e.g. ``("devices", 3, "modbus", "unit")``."""


class ReadingSink(Protocol):
    """Where an adapter delivers what it reads. Implemented by the bridge."""

    async def emit(self, reading: Reading) -> None:
        """Queue a reading for publication; waits while the uplink queue is full (backpressure)."""

    def set_state(self, device: DeviceIdentity, state: DeviceState, detail: str = "") -> None:
        """Report a device's link state (shown in the gateway's status event)."""


@dataclass(frozen=True, slots=True)
class DeviceSpec(Generic[SectionT]):
    """One configured device handed to an adapter plugin.

    ``section`` is the adapter's own validated model (the device's ``<adapter>:`` block),
    ``event`` the default event name, ``loc`` where the device sits in the config file.
    """

    identity: DeviceIdentity
    section: SectionT
    event: str
    loc: Loc


@dataclass
class Location:
    """A position fix in WGS84 decimal degrees; elevation and accuracy in metres."""

    latitude: float
    longitude: float
    elevation: float | None = None
    accuracy: float | None = None
    measured_at: float | None = None  # epoch seconds


@dataclass
class LocationBoard:
    """The gateway's latest known location, set by a location source (a GPS device)."""

    latest: Location | None = None
    _listeners: list[Any] = field(default_factory=list, repr=False)

    def publish(self, location: Location) -> None:
        """Record a new fix and tell listeners (the device-management agent)."""
        self.latest = location
        for listener in list(self._listeners):
            listener(location)

    def subscribe(self, listener: Any) -> None:
        """Call ``listener(location)`` on every new fix."""
        self._listeners.append(listener)


@dataclass
class AdapterContext:
    """What the daemon offers adapters besides their own config."""

    gateway: DeviceIdentity
    location: LocationBoard = field(default_factory=LocationBoard)


class Adapter(abc.ABC):
    """One supervised runner. Subclasses implement :meth:`run` and usually :meth:`execute`."""

    def __init__(self, name: str, devices: Iterable[DeviceIdentity]) -> None:
        self.name = name
        self.devices: frozenset[DeviceIdentity] = frozenset(devices)

    @abc.abstractmethod
    async def run(self, sink: ReadingSink) -> None:
        """Read the hardware until cancelled, emitting readings and device states.

        Raise :class:`~edged.errors.TransientAdapterError` or
        :class:`~edged.errors.PermanentAdapterError` to be restarted with backoff. Clean up in
        ``finally`` (cancellation is the stop signal).
        """

    def counters(self) -> Mapping[str, JSONValue]:
        """Counters worth showing in the gateway's status event (frames, errors, timeouts...).

        Called on the event loop; must be cheap and must not block. Default: nothing.
        """
        return {}

    async def execute(self, command: Command) -> Mapping[str, JSONValue] | None:
        """Carry out ``command`` for one of :attr:`devices`; return result data or ``None``.

        Raise :class:`~edged.errors.CommandRejected` for bad input (nothing done),
        :class:`~edged.errors.CommandFailed` when the hardware failed, and
        :class:`~edged.errors.CommandUnsupported` for unknown commands. May be called while
        :meth:`run` is running (from another task) and concurrently for different devices.
        """
        raise CommandUnsupported(f"{self.name} accepts no commands")
