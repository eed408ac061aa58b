"""The outbox's rules, on a real SQLite store in a temporary directory.

Delivery futures are plain asyncio futures settled by the test as the uplink would settle them
(the uplink's own futures are tested against a real broker in tests/integration/uplink).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path

import pytest

from edged.errors import PublishRejected
from edged.model import OutgoingMessage
from edged.outbox import DiskThread, OutboxStore
from edged.outbox import outbox as outbox_module
from edged.outbox.outbox import ENTRY_OVERHEAD, Entry, Outbox
from edged.uplink import DeliveryLost, UplinkClosedError

PRIORITY, BULK = 0, 2


def msg(device: str, n: int, size: int = 10) -> OutgoingMessage:
    return OutgoingMessage(
        f"iot-2/type/t/id/{device}/evt/e/fmt/json", f"{n}".encode().ljust(size), 1
    )


def label(entry: Entry) -> str:
    return f"{entry.device}{entry.message.payload.decode().strip()}"


async def opened(path: Path, **options: object) -> Outbox:
    disk = DiskThread(OutboxStore(str(path)), commit_interval=0.01)
    outbox = Outbox(disk, **{"max_bytes": 1 << 30, **options})  # type: ignore[arg-type]
    await outbox.start()
    return outbox


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = await opened(tmp_path / "outbox.db")
    yield box
    await box.close()


async def take(outbox: Outbox, count: int) -> list[Entry]:
    return [await asyncio.wait_for(outbox.next(), 5) for _ in range(count)]


def ack(outbox: Outbox, entry: Entry, error: BaseException | None = None) -> None:
    delivery: asyncio.Future[object] = asyncio.get_running_loop().create_future()
    if error is None:
        delivery.set_result(None)
    else:
        delivery.set_exception(error)
        delivery.exception()
    outbox.sent(entry, delivery)


async def rows_on_disk(outbox: Outbox) -> int:
    return len(await outbox.disk.load(0, 1_000_000))


async def test_devices_take_turns_and_each_keeps_its_order(outbox: Outbox) -> None:
    for n in range(3):
        outbox.put(BULK, "a", msg("a", n))
    outbox.put(BULK, "b", msg("b", 0))
    assert [label(e) for e in await take(outbox, 4)] == ["a0", "b0", "a1", "a2"]


async def test_command_results_go_before_telemetry(outbox: Outbox) -> None:
    outbox.put(BULK, "a", msg("a", 0))
    outbox.put(PRIORITY, "a", msg("a", 9))
    assert [label(e) for e in await take(outbox, 2)] == ["a9", "a0"]


async def test_a_held_device_is_skipped_without_being_reordered(tmp_path: Path) -> None:
    held = {"a"}
    box = await opened(tmp_path / "o.db", is_held=held.__contains__)
    try:
        for n in range(2):
            box.put(BULK, "a", msg("a", n))
        box.put(BULK, "b", msg("b", 0))
        assert [label(e) for e in await take(box, 1)] == ["b0"]
        waiting = asyncio.ensure_future(box.next())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        held.clear()
        box.wake()
        assert label(await asyncio.wait_for(waiting, 5)) == "a0"
        assert [label(e) for e in await take(box, 1)] == ["a1"]
    finally:
        await box.close()


async def test_an_acknowledged_message_is_deleted_and_an_unacknowledged_one_kept(
    outbox: Outbox,
) -> None:
    for n in range(2):
        outbox.put(BULK, "a", msg("a", n))
    first, second = await take(outbox, 2)
    ack(outbox, first)
    ack(outbox, second, UplinkClosedError("closing"))
    await asyncio.sleep(0.05)
    assert [m.payload.strip() for m in await outbox.disk.load(0, 10)] == [b"1"]
    assert outbox.depth == 1


async def test_a_rejected_message_is_deleted_and_counted(outbox: Outbox) -> None:
    outbox.put(BULK, "a", msg("a", 0))
    (entry,) = await take(outbox, 1)
    ack(outbox, entry, PublishRejected(0x87, "Not authorized"))
    await asyncio.sleep(0.05)
    assert await rows_on_disk(outbox) == 0
    assert outbox.counters["rejected"] == 1


async def test_a_message_the_uplink_lost_track_of_is_sent_again_first(outbox: Outbox) -> None:
    for n in range(3):
        outbox.put(BULK, "a", msg("a", n))
    first, _ = await take(outbox, 2)
    ack(outbox, first, DeliveryLost("dropped by paho"))
    assert [label(e) for e in await take(outbox, 2)] == ["a0", "a2"]


async def test_deliveries_in_order_are_taken_up_together_oldest_first(outbox: Outbox) -> None:
    loop = asyncio.get_running_loop()
    for n in range(4):
        outbox.put(BULK, "a", msg("a", n))
    entries = await take(outbox, 4)
    deliveries: list[asyncio.Future[None]] = [loop.create_future() for _ in entries]
    for entry, delivery in zip(entries, deliveries, strict=True):
        outbox.sent_in_order(entry, delivery)
    deliveries[1].set_result(None)
    deliveries[2].set_exception(DeliveryLost("dropped by paho"))
    await asyncio.sleep(0.05)
    # Settled before the oldest: waiting for it, nothing taken up yet.
    assert outbox.counters["delivered"] == 0
    assert outbox.take_nowait() is None
    deleted: list[list[int]] = []
    real_delete = outbox.disk.delete

    def delete(ids: Sequence[int]) -> None:
        deleted.append(list(ids))
        real_delete(ids)

    outbox.disk.delete = delete  # type: ignore[method-assign]
    deliveries[0].set_result(None)
    await asyncio.sleep(0.05)
    assert outbox.counters["delivered"] == 2
    assert outbox.counters["resent"] == 1
    assert [label(e) for e in await take(outbox, 1)] == ["a2"]
    assert [len(ids) for ids in deleted] == [2]  # one hand-over for the loop turn's deletes
    deliveries[3].set_result(None)
    await asyncio.sleep(0.05)
    assert outbox.counters["delivered"] == 3
    assert [m.payload.strip() for m in await outbox.disk.load(0, 10)] == [b"2"]


async def test_what_was_not_acknowledged_is_replayed_after_a_restart_interleaved_with_live_data(
    tmp_path: Path,
) -> None:
    path = tmp_path / "o.db"
    box = await opened(path)
    for n in range(4):
        box.put(BULK, "old", msg("old", n))
    (sent,) = await take(box, 1)
    ack(box, sent)
    await asyncio.sleep(0.05)
    await box.close()

    again = await opened(path)
    try:
        assert again.depth == 3
        again.put(BULK, "live", msg("live", 0))
        again.put(BULK, "live", msg("live", 1))
        again.put(BULK, "old", msg("old", 4))  # waits behind its own backlog
        labels = [label(e) for e in await take(again, 6)]
        assert [x for x in labels if x.startswith("old")] == ["old1", "old2", "old3", "old4"]
        assert [x for x in labels if x.startswith("live")] == ["live0", "live1"]
        assert labels.index("live0") < labels.index("old3")  # live data is not starved
    finally:
        await again.close()


async def test_a_backlog_larger_than_memory_stays_on_disk_and_comes_back_in_order(
    tmp_path: Path,
) -> None:
    box = await opened(tmp_path / "o.db", memory_bytes=2000)
    try:
        for n in range(300):
            box.put(BULK, "a", msg("a", n, size=50))
        assert box._memory <= 2000
        seen = []
        for _ in range(300):
            (entry,) = await take(box, 1)
            seen.append(int(entry.message.payload))
            ack(box, entry)
        assert seen == list(range(300))
    finally:
        await box.close()


async def test_over_the_cap_the_oldest_telemetry_is_dropped_and_counted(tmp_path: Path) -> None:
    sizes: Callable[[OutgoingMessage], int] = lambda m: len(m.payload) + len(m.topic)  # noqa: E731
    one = sizes(msg("a", 0, size=100))
    box = await opened(tmp_path / "o.db", max_bytes=10 * one)
    try:
        box.put(PRIORITY, "a", msg("a", 999, size=100))
        for n in range(30):
            box.put(BULK, "a", msg("a", n, size=100))
        for _ in range(100):
            if box.stored_bytes <= 10 * one:
                break
            await asyncio.sleep(0.01)
        assert box.stored_bytes <= 10 * one
        kept = [label(e) for e in await take(box, box.depth)]
        assert kept[0] == "a999"  # never dropped for telemetry
        bulk = [int(x[1:]) for x in kept[1:]]
        assert bulk == sorted(bulk) and bulk[-1] == 29  # the newest kept, the oldest dropped
        assert box.dropped["a"] == 30 - len(bulk)  # produced = kept + dropped, exactly
    finally:
        await box.close()


async def test_telemetry_older_than_max_age_is_dropped_when_its_turn_comes(tmp_path: Path) -> None:
    now = [1000.0]
    box = await opened(tmp_path / "o.db", max_age=60.0, clock=lambda: now[0])
    try:
        box.put(BULK, "a", msg("a", 0))
        box.put(PRIORITY, "a", msg("a", 9))
        now[0] += 30
        box.put(BULK, "a", msg("a", 1))
        now[0] += 40  # a0 is 70 s old, a1 40 s; the command result never expires
        assert [label(e) for e in await take(box, 2)] == ["a9", "a1"]
        assert box.counters["expired"] == 1
    finally:
        await box.close()


async def test_qos0_kept_off_the_disk_stays_under_the_memory_budget(tmp_path: Path) -> None:
    one = len(msg("a", 0).payload) + len(msg("a", 0).topic) + ENTRY_OVERHEAD
    box = await opened(tmp_path / "o.db", qos0_on_disk=False, memory_bytes=5 * one)
    try:
        for n in range(20):
            box.put(BULK, "a", msg("a", n)._replace(qos=0))
        assert await rows_on_disk(box) == 0
        kept = [int(e.message.payload) for e in await take(box, 5)]
        assert kept == [15, 16, 17, 18, 19]  # the oldest dropped first, the rest in order
        assert box.dropped["a"] == 15
        assert box.take_nowait() is None
    finally:
        await box.close()


async def test_a_drop_episode_is_logged_once_when_it_starts_and_once_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    one = len(msg("a", 0, size=100).payload) + len(msg("a", 0).topic)
    box = await opened(tmp_path / "o.db", max_bytes=10 * one)
    try:
        with caplog.at_level(logging.INFO, logger="edged.outbox.outbox"):
            for n in range(30):
                box.put(BULK, "a", msg("a", n, size=100))
            for _ in range(100):
                if box.stored_bytes <= 10 * one:
                    break
                await asyncio.sleep(0.01)
            for entry in await take(box, box.depth):
                ack(box, entry)
            await asyncio.sleep(0.05)
        messages = [r.getMessage() for r in caplog.records]
        assert len([m for m in messages if "dropping the oldest" in m]) == 1
        assert len([m for m in messages if "has room again" in m]) == 1
    finally:
        await box.close()


async def test_messages_that_all_went_to_disk_are_still_read_back(tmp_path: Path) -> None:
    box = await opened(tmp_path / "o.db", memory_bytes=100)  # smaller than one message
    try:
        for n in range(10):
            box.put(BULK, "a", msg("a", n))
        assert [label(e) for e in await take(box, 10)] == [f"a{n}" for n in range(10)]
    finally:
        await box.close()


class HeldCommits(OutboxStore):
    """A store whose commits wait until the test lets them through (a slow card)."""

    def __init__(self, path: str) -> None:
        super().__init__(path)
        self.go = threading.Event()

    def commit(self) -> None:
        self.go.wait(10)
        super().commit()


async def test_a_producer_faster_than_the_disk_waits_for_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(outbox_module, "MAX_DISK_LAG", 10)
    store = HeldCommits(str(tmp_path / "o.db"))
    box = Outbox(DiskThread(store, commit_interval=0.0), max_bytes=1 << 30)
    await box.start()
    try:
        for n in range(11):
            box.put(BULK, "a", msg("a", n))
        assert box.lagging
        waiting = asyncio.ensure_future(box.caught_up())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        store.go.set()
        await asyncio.wait_for(waiting, 5)
        assert not box.lagging
    finally:
        store.go.set()
        await box.close()
