"""The outbox: every accepted message is kept on disk until the broker acknowledged it.

A message is put (never waiting), kept in memory and appended to the disk (committed in
batches by :class:`~edged.outbox.diskthread.DiskThread`); the forwarder takes it with
:meth:`Outbox.next`, publishes it and hands the uplink's delivery future to
:meth:`Outbox.sent`; on the broker's acknowledgement its row is deleted. Rules:

* **Order**: per device and lane, messages leave in the order they were put. Lanes go by
  priority (0 command results and device management, 1 alarms, 2 telemetry); within a lane
  the devices take turns, one message each. After a restart the backlog of one device is
  therefore replayed interleaved with the live data of the others; a device's own live data
  waits behind its own backlog.
* **Memory**: at most ``memory_bytes`` of messages are held in memory. Beyond that a device's
  new messages are kept on disk only ("spilled") and read back in id order as memory frees;
  once a device has spilled messages, its newer ones spill too until those are read back.
  Rows found on disk at start are spilled messages of their devices.
* **Held devices** (``is_held``, the registrar's gate) are skipped without being reordered.
* **Byte cap**: above ``max_bytes`` stored, the oldest telemetry (lane 2) is dropped, counted
  per device; other lanes are never dropped for telemetry. Each episode is logged once when it
  starts and once when the outbox is back under 90 % of the cap. With ``max_age``, telemetry
  older than that is dropped when its turn comes (counted as expired).
* **QoS 0** messages skip the disk when ``qos0_on_disk`` is False: memory only, like messages
  whose append failed; both stay under ``memory_bytes`` by dropping the oldest telemetry.
* **Delivery outcomes**: acknowledged or rejected by the broker -> the row is deleted (a
  rejection is counted); the uplink closing or losing track -> the row stays and the message is
  sent again (now, or at the next start): at least once.
* **Disk failures**: messages whose append failed stay in memory only (delivered while the
  process lives); new messages go to disk again as soon as an append succeeds.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edged.errors import PublishRejected
from edged.model import OutgoingMessage
from edged.outbox.diskthread import DiskThread
from edged.outbox.store import BULK_LANE, LANES, OutboxError, Row, StoredMessage, message_size
from edged.uplink import UplinkClosedError

log = logging.getLogger(__name__)

PAGE = 500
"""Rows read back from disk at a time."""
MAX_DISK_LAG = 5000
"""Appends waiting for their commit above which :meth:`Outbox.caught_up` makes producers wait:
each costs ~1 KB until committed, so a producer faster than the disk is slowed to its pace
instead of growing memory (an uplink outage never triggers this: the disk keeps up)."""
BATCH = 1000
"""Messages put in one loop turn above which they are handed to the disk at once."""
ENTRY_OVERHEAD = 320
"""Bytes a message held in memory costs besides its topic and payload (the entry, the message
tuple, the payload's bytes object, their slots in the queues): counted against memory_bytes."""
PRIORITY_LANE = 0
"""Command results and device management: first, never dropped for telemetry."""
ALARM_LANE = 1
"""Configured alarm events: after the priority lane, never dropped for telemetry."""


@dataclass(slots=True, eq=False)
class Entry:
    """One message the outbox holds in memory."""

    lane: int
    device: str
    message: OutgoingMessage
    size: int
    created: float
    row: int | None = None
    """Its id on disk, once committed; None before, or when it could not be written."""
    sent: bool = False
    """Handed to the uplink (in flight until :meth:`Outbox.sent`'s delivery settles)."""
    done: bool = False
    """Acknowledged (or dropped): its row is to be deleted as soon as it is known."""


@dataclass(slots=True)
class _Device:
    unsent: deque[Entry] = field(default_factory=deque)
    spilled: int = 0
    """Rows of this device (in this lane) on disk and not in memory."""
    memory_upto: int = 0
    """The highest row id of a message put in memory: rows up to it are never spilled ones
    (a device's spilled messages are always newer than those it holds in memory)."""


class Outbox:
    """See the module docstring. One instance per daemon, used from the event loop only."""

    def __init__(
        self,
        disk: DiskThread,
        *,
        max_bytes: int,
        memory_bytes: int = 8 * 1024 * 1024,
        max_age: float | None = None,
        qos0_on_disk: bool = True,
        is_held: Callable[[str], bool] = lambda device: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.disk = disk
        self.max_bytes = max_bytes
        self.memory_bytes = memory_bytes
        self.max_age = max_age
        self.qos0_on_disk = qos0_on_disk
        self.is_held = is_held
        self.clock = clock
        self._lanes: list[OrderedDict[str, _Device]] = [OrderedDict() for _ in LANES]
        self._ready: list[OrderedDict[str, None]] = [OrderedDict() for _ in LANES]
        self._resident: dict[int, Entry] = {}
        self._memory = 0
        self._stored_rows = 0
        self._stored_bytes = 0
        self._spilled = 0
        self._cursor = 0
        self._paging: asyncio.Task[None] | None = None
        self._trimming: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._emptied = asyncio.Event()
        self._caught_up = asyncio.Event()
        self._lagging = 0
        self._batch: list[tuple[Row, Entry, bool]] = []
        self._deletes: list[int] = []
        self._flush_due = False
        self._in_order: deque[tuple[Entry, asyncio.Future[Any]]] = deque()
        self._watched: asyncio.Future[Any] | None = None
        self._disk_failing = False
        self._dropping = False
        self._episode_drops = 0
        self._closed = False
        self.counters: Counter[str] = Counter()
        self.dropped: Counter[str] = Counter()
        """Messages dropped by the byte cap, per device."""

    # -- start ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the disk (at start-up: blocks briefly) and take what the last run left."""
        report = self.disk.start()  # the one blocking call of the outbox, before READY=1
        if report.moved_aside:
            log.error(
                "the outbox database %s was unusable (%s); moved aside to %s, starting empty",
                report.path,
                report.reason,
                report.moved_aside,
            )
        self._stored_rows, self._stored_bytes = report.rows, report.bytes
        for lane, device, count in await self.disk.device_counts():
            self._device(lane, device).spilled += count
            self._spilled += count
        if report.rows:
            log.info("the outbox holds %d message(s) from the last run; replaying", report.rows)
            self.counters["replay_pending"] = report.rows
            self._maybe_page_in()

    async def close(self) -> None:
        """Stop reading and writing: commit what is queued and close the disk (bounded)."""
        self._flush()
        self._closed = True
        for task in (self._paging, self._trimming):
            if task is not None:
                task.cancel()
        await self.disk.close()

    # -- putting -------------------------------------------------------------------------------

    def put(self, lane: int, device: str, message: OutgoingMessage) -> None:
        """Accept a message: it is delivered at least once unless the byte cap drops it."""
        size = message_size(message.topic, message.payload)
        entry = Entry(lane, device, message, size, self.clock())
        if message.qos == 0 and not self.qos0_on_disk:
            self._hold_in_memory_only(entry)
            return
        state = self._device(lane, device)
        spill = not self._disk_failing and (
            state.spilled > 0 or self._memory + size + ENTRY_OVERHEAD > self.memory_bytes
        )
        row = (lane, device, message.topic, message.payload, message.qos, entry.created)
        self._batch.append((row, entry, spill))
        if len(self._batch) >= BATCH:
            self._flush()
        else:
            self._flush_soon()
        self._lagging += 1
        self._stored_rows += 1
        self._stored_bytes += size
        if spill:
            state.spilled += 1
            self._spilled += 1
            self._maybe_page_in()  # memory may have room, if it spilled to keep the order
        else:
            if self._disk_failing:
                self._make_room(size)
            self._hold(entry)
        if self._stored_bytes > self.max_bytes:
            self._maybe_trim()

    def _flush_soon(self) -> None:
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        """Hand the deletes and the messages put since the last flush to the disk as one delete
        and one append (once per loop turn: one hand-over per batch, not per message)."""
        self._flush_due = False
        if self._deletes:
            deletes, self._deletes = self._deletes, []
            self.disk.delete(deletes)
        batch, self._batch = self._batch, []
        if not batch:
            return
        appended = self.disk.append([row for row, _, _ in batch])
        appended.add_done_callback(lambda f: self._batch_written(f, batch))

    @property
    def lagging(self) -> bool:
        """Whether more than :data:`MAX_DISK_LAG` appends wait for their commit."""
        return self._lagging > MAX_DISK_LAG

    async def caught_up(self) -> None:
        """Wait until the disk is back within half of :data:`MAX_DISK_LAG` appends."""
        while self._lagging > MAX_DISK_LAG // 2:
            self._caught_up.clear()
            await self._caught_up.wait()

    def _hold_in_memory_only(self, entry: Entry) -> None:
        self.counters["memory_only"] += 1
        self._make_room(entry.size)
        self._hold(entry)

    def _make_room(self, size: int) -> None:
        """Messages held in memory only (QoS 0 kept off the disk, or a failing disk) stay under
        ``memory_bytes``: the oldest telemetry held in memory is dropped first."""
        bulk = self._lanes[BULK_LANE]
        while self._memory + size + ENTRY_OVERHEAD > self.memory_bytes:
            heads = [
                (state.unsent[0].created, device) for device, state in bulk.items() if state.unsent
            ]
            if not heads:
                return
            _, device = min(heads)
            state = bulk[device]
            victim = state.unsent.popleft()
            if not state.unsent:
                self._ready[BULK_LANE].pop(device, None)
            if victim.row is not None:
                self._resident.pop(victim.row, None)
            self._note_drop(device)
            self._finish(victim)

    def _device(self, lane: int, device: str) -> _Device:
        state = self._lanes[lane].get(device)
        if state is None:
            state = self._lanes[lane][device] = _Device()
        return state

    def _hold(self, entry: Entry) -> None:
        self._device(entry.lane, entry.device).unsent.append(entry)
        self._memory += entry.size + ENTRY_OVERHEAD
        self._ready[entry.lane][entry.device] = None
        self._wakeup.set()

    def _batch_written(
        self, appended: asyncio.Future[list[int]], batch: list[tuple[Row, Entry, bool]]
    ) -> None:
        self._lagging -= len(batch)
        if self._lagging <= MAX_DISK_LAG // 2:
            self._caught_up.set()
        if appended.cancelled() or appended.exception() is not None:
            self._disk_failed(appended)
            for _, entry, spilled in batch:
                self._not_written(entry, spilled)
            return
        self._disk_ok()
        for (_, entry, spilled), row in zip(batch, appended.result(), strict=True):
            if spilled:
                continue
            entry.row = row
            state = self._device(entry.lane, entry.device)
            state.memory_upto = max(state.memory_upto, row)
            if entry.done:
                self._delete(entry)
            else:
                self._resident[row] = entry

    def _not_written(self, entry: Entry, spilled: bool) -> None:
        self.counters["memory_only"] += 1
        self._unstore(entry.size)
        if spilled:
            # Keep it in memory after all (it may overtake older rows still on disk).
            self._device(entry.lane, entry.device).spilled -= 1
            self._spilled -= 1
            self._hold(entry)

    def _disk_failed(self, appended: asyncio.Future[list[int]]) -> None:
        if not self._disk_failing:
            self._disk_failing = True
            error = "cancelled" if appended.cancelled() else appended.exception()
            log.error(
                "the outbox cannot write to disk (%s): messages are kept in memory only until "
                "it can (counted as memory_only)",
                error,
            )

    def _disk_ok(self) -> None:
        if self._disk_failing:
            self._disk_failing = False
            log.info("the outbox writes to disk again")

    # -- taking --------------------------------------------------------------------------------

    async def next(self) -> Entry:
        """The next message to publish (waits until there is one that is not held)."""
        while True:
            entry = self.take_nowait()
            if entry is not None:
                return entry
            self._wakeup.clear()
            await self._wakeup.wait()

    def wake(self) -> None:
        """Look again for messages (a held device was released)."""
        self._wakeup.set()

    def take_nowait(self) -> Entry | None:
        """The next message to publish, or None when none is ready."""
        for lane, ready in enumerate(self._ready):
            for device in ready:
                if self.is_held(device):
                    continue
                unsent = self._lanes[lane][device].unsent
                if lane == BULK_LANE and self.max_age is not None:
                    self._expire(unsent, device)
                    if not unsent:
                        del ready[device]
                        return self.take_nowait()
                entry = unsent.popleft()
                entry.sent = True
                if unsent:
                    ready.move_to_end(device)  # the devices take turns
                else:
                    del ready[device]
                return entry
        return None

    def _expire(self, unsent: deque[Entry], device: str) -> None:
        assert self.max_age is not None
        oldest = self.clock() - self.max_age
        while unsent and unsent[0].created < oldest:
            self.counters["expired"] += 1
            self._finish(unsent.popleft())

    def sent(self, entry: Entry, delivery: asyncio.Future[Any]) -> None:
        """``entry`` was handed to the uplink; ``delivery`` settles when the broker answers."""
        delivery.add_done_callback(functools.partial(self._settled, entry))

    def sent_in_order(self, entry: Entry, delivery: asyncio.Future[Any]) -> None:
        """Like :meth:`sent`, for a delivery that settles in the order of these calls (the
        uplink's own futures: the broker acknowledges in order). They are taken up together,
        oldest first, in one callback per batch instead of one per message; one that settles
        before an older one is taken up once the older one has settled."""
        self._in_order.append((entry, delivery))
        if self._watched is None:
            self._watch(delivery)

    def _watch(self, delivery: asyncio.Future[Any]) -> None:
        self._watched = delivery
        delivery.add_done_callback(self._settled_in_order)

    def _settled_in_order(self, _: asyncio.Future[Any]) -> None:
        self._watched = None
        in_order, settled = self._in_order, self._settled
        while in_order and in_order[0][1].done():
            settled(*in_order.popleft())
        if in_order:
            self._watch(in_order[0][1])

    def _settled(self, entry: Entry, delivery: asyncio.Future[Any]) -> None:
        error = None if delivery.cancelled() else delivery.exception()
        if error is None and not delivery.cancelled():
            self.counters["delivered"] += 1
        elif isinstance(error, PublishRejected):
            self.counters["rejected"] += 1  # the broker will never take it: do not keep it
        elif isinstance(error, UplinkClosedError):
            return  # shutting down: its row stays and it is sent again at the next start
        else:  # the uplink lost track of it: send it again now, ahead of its successors
            self.counters["resent"] += 1
            self.requeue(entry)
            return
        self._finish(entry)

    def requeue(self, entry: Entry) -> None:
        """``entry`` was taken but not handed to the uplink: it goes first again."""
        entry.sent = False
        self._device(entry.lane, entry.device).unsent.appendleft(entry)
        ready = self._ready[entry.lane]
        ready[entry.device] = None
        ready.move_to_end(entry.device, last=False)
        self._wakeup.set()

    def discard(self, entry: Entry) -> None:
        """``entry`` can never be sent (the uplink refused it): forget it and its row."""
        self.counters["discarded"] += 1
        self._finish(entry)

    async def wait_empty(self) -> None:
        """Wait until nothing is stored (everything acknowledged, dropped or discarded)."""
        while self._stored_rows > 0:
            self._emptied.clear()
            await self._emptied.wait()

    def _finish(self, entry: Entry) -> None:
        entry.done = True
        self._memory -= entry.size + ENTRY_OVERHEAD
        if entry.row is not None:
            self._resident.pop(entry.row, None)
            self._delete(entry)
        self._maybe_page_in()

    def _unstore(self, size: int) -> None:
        self._stored_rows -= 1
        self._stored_bytes -= size
        if self._stored_rows <= 0:
            self._emptied.set()
        if self._dropping and self._stored_bytes * 10 <= self.max_bytes * 9:
            self._dropping = False
            log.info("the outbox has room again; %d message(s) dropped", self._episode_drops)
            self._episode_drops = 0

    def _delete(self, entry: Entry) -> None:
        assert entry.row is not None
        if self._closed:
            return  # stays on disk: sent again at the next start (at least once)
        self._deletes.append(entry.row)
        self._flush_soon()
        self._unstore(entry.size)

    # -- the byte cap ---------------------------------------------------------------------------

    def _maybe_trim(self) -> None:
        if self._trimming is None:
            self._trimming = asyncio.get_running_loop().create_task(
                self._trim(), name="outbox-trim"
            )

    async def _trim(self) -> None:
        try:
            while self._stored_bytes > self.max_bytes:
                self._flush()
                victims = await self.disk.oldest_bulk(PAGE)
                if not victims:
                    break  # only command results, device management and alarms left: keep them
                for row, device, size in victims:
                    if self._stored_bytes <= self.max_bytes:
                        break
                    self._drop(row, device, size)
        except OutboxError as exc:
            log.error("the outbox could not drop old telemetry to stay under its cap: %s", exc)
        finally:
            self._trimming = None

    def _drop(self, row: int, device: str, size: int) -> None:
        entry = self._resident.get(row)
        if entry is not None:
            if entry.sent:
                return  # in flight: its acknowledgement deletes it
            state = self._device(entry.lane, device)
            state.unsent.remove(entry)
            if not state.unsent:
                self._ready[entry.lane].pop(device, None)
            del self._resident[row]
            self._memory -= entry.size + ENTRY_OVERHEAD
            entry.done = True
        else:
            state = self._device(BULK_LANE, device)
            if not state.spilled:
                return
            state.spilled -= 1
            self._spilled -= 1
        if not self._closed:
            self._deletes.append(row)
            self._flush_soon()
        self._unstore(size)
        self._note_drop(device)

    def _note_drop(self, device: str) -> None:
        self.dropped[device] += 1
        self.counters["dropped"] += 1
        self._episode_drops += 1
        if not self._dropping:
            self._dropping = True
            log.warning(
                "the outbox is full (cap %d bytes on disk, %d in memory): dropping the oldest "
                "telemetry (counted per device in the status event); command results, device "
                "management and alarms are kept",
                self.max_bytes,
                self.memory_bytes,
            )

    # -- what it holds -------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Messages stored and not yet acknowledged."""
        return self._stored_rows

    @property
    def stored_bytes(self) -> int:
        """Topic and payload bytes stored."""
        return self._stored_bytes

    def oldest_age(self) -> float:
        """Seconds the oldest message held in memory has waited (0 when none)."""
        heads = [
            state.unsent[0].created
            for lane in self._lanes
            for state in lane.values()
            if state.unsent
        ]
        return max(0.0, self.clock() - min(heads)) if heads else 0.0

    # -- reading spilled rows back -------------------------------------------------------------

    def _maybe_page_in(self) -> None:
        if self._spilled and self._paging is None and self._memory * 2 <= self.memory_bytes:
            self._paging = asyncio.get_running_loop().create_task(
                self._page_in(), name="outbox-page-in"
            )

    async def _page_in(self) -> None:
        try:
            while self._spilled and self._memory * 2 <= self.memory_bytes:
                self._flush()  # spilled rows put this turn must be on disk before the read
                rows = await self.disk.load(self._cursor, PAGE)
                if not rows:
                    break
                for row in rows:
                    self._take_back(row)
                self._cursor = rows[-1].id
        except OutboxError as exc:
            log.error("the outbox could not read spilled messages back: %s", exc)
        finally:
            self._paging = None

    def _take_back(self, row: StoredMessage) -> None:
        state = self._device(row.lane, row.device)
        if row.id <= state.memory_upto or row.id in self._resident or not state.spilled:
            return  # held in memory already (or acknowledged and being deleted)
        state.spilled -= 1
        self._spilled -= 1
        if self.counters["replay_pending"]:
            self.counters["replay_pending"] -= 1
            self.counters["replayed"] += 1
        message = OutgoingMessage(row.topic, row.payload, row.qos)
        size = message_size(row.topic, row.payload)
        entry = Entry(row.lane, row.device, message, size, row.created, row.id)
        self._resident[row.id] = entry
        self._hold(entry)
