"""The bounded in-memory queue between the bridge and the uplink, in two lanes.

* The **priority** lane carries command results and the gateway's status: small, few, and
  useless if they wait behind a telemetry backlog. It never makes anyone wait: when it is full
  (``priority_max`` messages or ``priority_max_bytes``) a new message is dropped, counted, and
  the episode logged once.
* The **bulk** lane carries readings. It is bounded in messages *and* bytes; a full bulk lane
  makes :meth:`SendQueue.put` wait (backpressure into the adapters) instead of dropping. Each
  such episode is logged once when it starts and once when it ends (the lane back to half its
  bounds), with how many readings waited and for how long; an episode that starts within
  :data:`EPISODE_QUIET` seconds of the last one's end is counted but logged at DEBUG, so a
  producer that keeps the lane at its limit does not fill the log.

The forwarder takes priority messages first, then bulk messages in the order they were put.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

log = logging.getLogger(__name__)

MESSAGE_OVERHEAD = 64
"""Bytes counted per message on top of topic and payload (bookkeeping, MQTT header)."""
EPISODE_QUIET = 60.0
"""Seconds after a full episode ended during which a new one is logged at DEBUG only."""


class OutgoingMessage(NamedTuple):
    """A message waiting for the uplink."""

    topic: str
    payload: bytes
    qos: int


def message_size(message: OutgoingMessage) -> int:
    """The bytes ``message`` counts against a byte cap."""
    return len(message.payload) + len(message.topic) + MESSAGE_OVERHEAD


class _Lane:
    __slots__ = ("bytes", "entries")

    def __init__(self) -> None:
        self.entries: deque[tuple[OutgoingMessage, int, float]] = deque()
        self.bytes = 0


class SendQueue:
    """Two lanes, bounded; see the module docstring for the rules."""

    def __init__(
        self,
        max_messages: int,
        max_bytes: int,
        *,
        priority_max: int = 1000,
        priority_max_bytes: int = 16 * 1024 * 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_messages < 1 or max_bytes < 1 or priority_max < 1 or priority_max_bytes < 1:
            raise ValueError("queue bounds must be positive")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.priority_max = priority_max
        self.priority_max_bytes = priority_max_bytes
        self.clock = clock
        self._priority = _Lane()
        self._bulk = _Lane()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._unfinished = 0
        self._all_done = asyncio.Event()
        self._all_done.set()
        self.waits = 0
        """Readings that had to wait for room (since start)."""
        self.full_episodes = 0
        """Times the bulk lane became full (since start)."""
        self.priority_dropped = 0
        """Priority messages dropped because their lane was full (since start)."""
        self._full_since: float | None = None
        self._episode_level = logging.WARNING
        self._last_end = -EPISODE_QUIET
        self._episode_waits = 0
        self._dropping = False

    # -- sizes ---------------------------------------------------------------------------------

    def qsize(self) -> int:
        """Messages waiting in both lanes."""
        return len(self._priority.entries) + len(self._bulk.entries)

    def empty(self) -> bool:
        """Whether nothing waits."""
        return not (self._priority.entries or self._bulk.entries)

    @property
    def bytes(self) -> int:
        """Bytes waiting in both lanes (as counted against the caps)."""
        return self._priority.bytes + self._bulk.bytes

    def oldest_age(self) -> float:
        """Seconds the oldest waiting message has waited (0 when empty)."""
        ages = [lane.entries[0][2] for lane in (self._priority, self._bulk) if lane.entries]
        return self.clock() - min(ages) if ages else 0.0

    def _bulk_full(self, size: int) -> bool:
        lane = self._bulk
        count = len(lane.entries)
        # A message bigger than the whole byte cap still goes through, alone.
        return count >= self.max_messages or (count > 0 and lane.bytes + size > self.max_bytes)

    # -- putting -------------------------------------------------------------------------------

    def put_nowait(self, message: OutgoingMessage) -> bool:
        """Queue a bulk message if there is room (no waiting); else False."""
        size = len(message.payload) + len(message.topic) + MESSAGE_OVERHEAD
        lane = self._bulk
        count = len(lane.entries)
        if count >= self.max_messages or (count and lane.bytes + size > self.max_bytes):
            return False
        self._append(lane, message, size)
        return True

    async def put(self, message: OutgoingMessage) -> None:
        """Queue a bulk message; waits while the bulk lane is full."""
        size = message_size(message)
        if self._bulk_full(size):
            self._begin_wait()
            loop = asyncio.get_running_loop()
            while self._bulk_full(size):
                waiter: asyncio.Future[None] = loop.create_future()
                self._putters.append(waiter)
                try:
                    await waiter
                except asyncio.CancelledError:
                    if waiter.done() and not waiter.cancelled():
                        self._wake(self._putters)  # pass the wake-up on
                    raise
                finally:
                    if waiter in self._putters:
                        self._putters.remove(waiter)
        self._append(self._bulk, message, size)

    def put_priority(self, message: OutgoingMessage) -> bool:
        """Queue a priority message without waiting; False (counted, logged) when it is full."""
        size = message_size(message)
        lane = self._priority
        if len(lane.entries) >= self.priority_max or (
            lane.entries and lane.bytes + size > self.priority_max_bytes
        ):
            self.priority_dropped += 1
            if not self._dropping:
                self._dropping = True
                log.error(
                    "the priority queue is full (%d messages): dropping command results and "
                    "status events until the uplink catches up (counted in the status event)",
                    len(lane.entries),
                )
            return False
        if self._dropping:
            self._dropping = False
            log.info("the priority queue has room again; %d dropped", self.priority_dropped)
        self._append(lane, message, size)
        return True

    def _append(self, lane: _Lane, message: OutgoingMessage, size: int) -> None:
        lane.entries.append((message, size, self.clock()))
        lane.bytes += size
        self._unfinished += 1
        self._all_done.clear()
        if self._getters:
            self._wake(self._getters)

    def _begin_wait(self) -> None:
        self.waits += 1
        self._episode_waits += 1
        if self._full_since is None:
            self._full_since = now = self.clock()
            self.full_episodes += 1
            quiet = now - self._last_end < EPISODE_QUIET
            self._episode_level = logging.DEBUG if quiet else logging.WARNING
            log.log(
                self._episode_level,
                "the send queue is full (%d messages, %d bytes): readings wait for the uplink "
                "(backpressure); the end of this episode is logged",
                len(self._bulk.entries),
                self._bulk.bytes,
            )

    def _maybe_end_wait(self) -> None:
        if self._full_since is None or self._putters:
            return
        lane = self._bulk
        if len(lane.entries) * 2 > self.max_messages or lane.bytes * 2 > self.max_bytes:
            return  # still over half full: one episode, not one per freed slot
        self._last_end = now = self.clock()
        log.log(
            logging.INFO if self._episode_level > logging.INFO else logging.DEBUG,
            "the send queue has room again after %.1f s; %d reading(s) waited",
            now - self._full_since,
            self._episode_waits,
        )
        self._full_since = None
        self._episode_waits = 0

    # -- taking --------------------------------------------------------------------------------

    async def get(self) -> OutgoingMessage:
        """The next message: priority lane first, each lane in order. Waits while empty."""
        loop = asyncio.get_running_loop()
        while self.empty():
            waiter: asyncio.Future[None] = loop.create_future()
            self._getters.append(waiter)
            try:
                await waiter
            finally:
                if waiter in self._getters:
                    self._getters.remove(waiter)
        return self.get_nowait()

    def get_nowait(self) -> OutgoingMessage:
        """The next message; raises ``IndexError`` when empty."""
        lane = self._priority if self._priority.entries else self._bulk
        message, size, _ = lane.entries.popleft()
        lane.bytes -= size
        if lane is self._bulk:
            if self._putters:
                self._wake(self._putters)
            elif self._full_since is not None and len(lane.entries) * 2 <= self.max_messages:
                self._maybe_end_wait()
        return message

    def task_done(self) -> None:
        """The forwarder is done with a message it took."""
        self._unfinished -= 1
        if self._unfinished <= 0:
            self._unfinished = 0
            self._all_done.set()

    async def join(self) -> None:
        """Wait until every message put was taken and marked done."""
        await self._all_done.wait()

    @staticmethod
    def _wake(waiters: deque[asyncio.Future[None]]) -> None:
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
