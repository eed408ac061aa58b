"""The durable outbox between the bridge and the uplink (see ``docs/outbox.md``)."""

from edged.outbox.diskthread import DiskThread
from edged.outbox.store import (
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
    "DiskThread",
    "OpenReport",
    "OutboxDiskFull",
    "OutboxError",
    "OutboxIOError",
    "OutboxPathError",
    "OutboxSchemaError",
    "OutboxStore",
    "StoredMessage",
]
