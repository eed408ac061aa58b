"""The subscription set: what the gateway wants versus what the broker's session holds. Pure."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")

BATCH = 16
"""Topic filters per SUBSCRIBE / UNSUBSCRIBE packet."""


def _valid(topic_filter: str, qos: int) -> None:
    if not topic_filter or "\0" in topic_filter or len(topic_filter.encode()) > 65535:
        raise ValueError(f"invalid topic filter {topic_filter!r}")
    if qos not in (0, 1, 2):
        raise ValueError(f"invalid QoS {qos} for {topic_filter}")


class Subscriptions:
    """Tracks the wanted set against what the broker's session holds.

    A filter counts as held only once its SUBACK arrived: a SUBSCRIBE lost with the connection
    (or with a broker that went down before storing it) is sent again after the next CONNACK,
    even when the broker resumes the session.
    """

    def __init__(self) -> None:
        self.wanted: dict[str, int] = {}
        self.held: dict[str, int] = {}
        self.requested: dict[str, int] = {}

    def want(self, filters: Sequence[tuple[str, int]]) -> None:
        """Replace the wanted set (a filter listed twice keeps its last QoS)."""
        wanted: dict[str, int] = {}
        for topic_filter, qos in filters:
            _valid(topic_filter, qos)
            wanted[topic_filter] = qos
        self.wanted = wanted

    def session_lost(self) -> None:
        """The broker has no session for us (or we cannot know what it holds)."""
        self.held = {}
        self.requested = {}

    def connection_lost(self) -> None:
        """Requests without a SUBACK may never have reached the broker."""
        self.requested = {}

    def pending(self) -> tuple[list[tuple[str, int]], list[str]]:
        """What to subscribe (new or changed QoS) and to unsubscribe; marks them as requested."""
        add = [
            (f, q)
            for f, q in self.wanted.items()
            if self.held.get(f) != q and self.requested.get(f) != q
        ]
        remove = [f for f in {**self.held, **self.requested} if f not in self.wanted]
        for topic_filter in remove:
            self.held.pop(topic_filter, None)
            self.requested.pop(topic_filter, None)
        self.requested.update(add)
        return add, remove

    def acknowledged(self, batch: Sequence[tuple[str, int]]) -> None:
        """The broker answered the SUBSCRIBE for ``batch`` (refusals count too: no retry loop)."""
        for topic_filter, qos in batch:
            if self.requested.get(topic_filter) == qos:
                del self.requested[topic_filter]
                self.held[topic_filter] = qos


def batches(items: Sequence[T]) -> Iterator[list[T]]:
    """``items`` in chunks of :data:`BATCH`."""
    for start in range(0, len(items), BATCH):
        yield list(items[start : start + BATCH])
