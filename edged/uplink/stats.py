"""Values the uplink hands out: incoming messages and a snapshot of its counters."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message the broker delivered to the gateway (a command, notify or DM request)."""

    topic: str
    payload: bytes
    qos: int
    retain: bool


class UplinkState(enum.StrEnum):
    """Where the session is in its life."""

    IDLE = "idle"  # run() not started
    CONNECTING = "connecting"  # opening the connection or waiting for CONNACK
    CONNECTED = "connected"
    BACKOFF = "backoff"  # waiting before the next attempt
    CLOSING = "closing"  # close(): flushing, then DISCONNECT
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class UplinkStats:
    """A snapshot of the uplink's state and counters (since the Uplink was created)."""

    state: str
    connected: bool
    connects: int
    """Successful CONNACKs."""
    reconnects: int
    """Successful CONNACKs after the first one."""
    attempts: int
    """Connection attempts, successful or not."""
    published: int
    """Messages handed to paho (QoS 0 and 1)."""
    acked: int
    """QoS 1 messages the broker acknowledged."""
    inflight: int
    """QoS 1 messages awaiting PUBACK (re-sent after a reconnect)."""
    refused_oversize: int
    """Publications refused locally for exceeding the payload limit."""
    rejected: int
    """QoS 1 messages the broker acknowledged with a failure reason (MQTT 5 only)."""
    received: int
    """Messages delivered to the gateway."""
    subscribe_packets: int
    """SUBSCRIBE packets sent."""
    subscribed: int
    """Topic filters the broker acknowledged (SUBACK) for the current session."""
    last_error: str
    """The latest connection problem in plain words ("" if none yet); never holds the token."""
    retry_delay: float
    """The delay chosen before the latest reconnection attempt (0 before any)."""
    suspected_takeover: bool
    """Another client seems to be using this client id."""
