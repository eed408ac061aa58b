"""The durable outbox between the bridge and the uplink (see ``docs/outbox.md``)."""

from edged.outbox.diskthread import DiskThread
from edged.outbox.outbox import ALARM_LANE, PRIORITY_LANE, Entry, Outbox
from edged.outbox.store import (
    BULK_LANE,
    OpenReport,
    OutboxDiskFull,
    OutboxError,
    OutboxIOError,
    OutboxPathError,
    OutboxSchemaError,
    OutboxStore,
    StoredMessage,
)

__all__ = [
    "ALARM_LANE",
    "BULK_LANE",
    "PRIORITY_LANE",
    "DiskThread",
    "Entry",
    "OpenReport",
    "Outbox",
    "OutboxDiskFull",
    "OutboxError",
    "OutboxIOError",
    "OutboxPathError",
    "OutboxSchemaError",
    "OutboxStore",
    "StoredMessage",
]
