"""A local stand-in for the IBM Watson IoT / Maximo IoT platform: for tests, demo and benchmarks.

Not part of the daemon: :class:`PlatformEmulator` is an MQTT application client on a local broker
that records and checks everything a gateway publishes, keeps a device registry, answers the
gateway's device-management requests and sends commands, notify messages and DM requests.
See ``docs/emulator.md``.
"""

from edged.emulator.emulator import EmulatorError, PlatformEmulator
from edged.emulator.records import (
    DeviceRecord,
    DMExchange,
    DMMessage,
    ManagedState,
    Publication,
    ReceivedEvent,
    Record,
    SentCommand,
    SentNotify,
    Violation,
)

__all__ = [
    "DMExchange",
    "DMMessage",
    "DeviceRecord",
    "EmulatorError",
    "ManagedState",
    "PlatformEmulator",
    "Publication",
    "ReceivedEvent",
    "Record",
    "SentCommand",
    "SentNotify",
    "Violation",
]
