"""A local stand-in for the IBM Watson IoT / Maximo IoT platform: for tests, demo and benchmarks.

Not part of the daemon: :class:`PlatformEmulator` is an MQTT application client on a local broker
that records and checks everything a gateway publishes, keeps a device registry, answers the
gateway's device-management requests and sends commands, notify messages and DM requests.
See ``docs/emulator.md``.

The names below are loaded on first use, so that building the ``edged`` command line (which
registers ``edged emulator``) never loads the emulator into the daemon.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edged.emulator.emulator import EmulatorError, PlatformEmulator
    from edged.emulator.records import (
        DeviceRecord,
        DMExchange,
        DMMessage,
        DroppedPublication,
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
    "DroppedPublication",
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


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = "emulator" if name in ("EmulatorError", "PlatformEmulator") else "records"
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
