"""The send queue: two lanes, bounded in messages and bytes, episodes logged once."""

from __future__ import annotations

import asyncio
import logging
import tracemalloc

import pytest

from edged.sendqueue import MESSAGE_OVERHEAD, OutgoingMessage, SendQueue


def msg(n: int, size: int = 10, topic: str = "t") -> OutgoingMessage:
    return OutgoingMessage(topic, str(n).encode().ljust(size, b"."), 1)


async def test_priority_messages_go_first_and_each_lane_keeps_its_order() -> None:
    queue = SendQueue(100, 1 << 20)
    for n in range(3):
        await queue.put(msg(n))
    assert queue.put_priority(msg(100))
    assert queue.put_priority(msg(101))
    taken = [int(queue.get_nowait().payload.rstrip(b".")) for _ in range(5)]
    assert taken == [100, 101, 0, 1, 2]


async def test_the_byte_cap_applies_backpressure_before_the_message_cap() -> None:
    size = 1000
    per_message = size + 1 + MESSAGE_OVERHEAD
    queue = SendQueue(1000, 3 * per_message)
    for n in range(3):
        await queue.put(msg(n, size))
    blocked = asyncio.ensure_future(queue.put(msg(3, size)))
    await asyncio.sleep(0.01)
    assert not blocked.done()
    assert queue.bytes == 3 * per_message
    queue.get_nowait()
    await asyncio.wait_for(blocked, 1)
    assert queue.qsize() == 3
    assert queue.waits == 1


async def test_a_message_larger_than_the_byte_cap_still_passes_alone() -> None:
    queue = SendQueue(10, 100)
    await asyncio.wait_for(queue.put(msg(0, 5000)), 1)
    assert queue.qsize() == 1


async def test_a_full_episode_is_logged_once_at_its_start_and_once_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = SendQueue(10, 1 << 20)
    with caplog.at_level(logging.INFO, logger="edged.sendqueue"):
        for n in range(10):
            await queue.put(msg(n))
        producers = [asyncio.ensure_future(queue.put(msg(10 + n))) for n in range(20)]
        await asyncio.sleep(0.01)
        while not all(p.done() for p in producers) or not queue.empty():
            queue.get_nowait()
            await asyncio.sleep(0)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2, lines
    assert lines[0].startswith("the send queue is full (10 messages")
    assert "has room again after" in lines[1] and "20 reading(s) waited" in lines[1]
    assert queue.full_episodes == 1 and queue.waits == 20


async def test_a_full_priority_lane_drops_counts_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = SendQueue(10, 1 << 20, priority_max=2)
    with caplog.at_level(logging.INFO, logger="edged.sendqueue"):
        results = [queue.put_priority(msg(n)) for n in range(5)]
        queue.get_nowait()
        assert queue.put_priority(msg(9))
    assert results == [True, True, False, False, False]
    assert queue.priority_dropped == 3
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.ERROR, logging.INFO]


async def test_join_waits_until_every_message_is_done() -> None:
    queue = SendQueue(10, 1 << 20)
    await queue.put(msg(0))
    queue.put_priority(msg(1))
    joined = asyncio.ensure_future(queue.join())
    for _ in range(2):
        await queue.get()
        await asyncio.sleep(0)
        assert not joined.done()
        queue.task_done()
    await asyncio.wait_for(joined, 1)


async def test_get_waits_for_a_message_and_oldest_age_tells_how_long_it_waited() -> None:
    now = [0.0]
    queue = SendQueue(10, 1 << 20, clock=lambda: now[0])
    getter = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    assert queue.oldest_age() == 0.0
    await queue.put(msg(7))
    assert (await asyncio.wait_for(getter, 1)).payload.startswith(b"7")
    await queue.put(msg(8))
    now[0] = 12.5
    assert queue.oldest_age() == 12.5


async def test_a_cancelled_producer_passes_its_wake_up_on() -> None:
    queue = SendQueue(1, 1 << 20)
    await queue.put(msg(0))
    first = asyncio.ensure_future(queue.put(msg(1)))
    second = asyncio.ensure_future(queue.put(msg(2)))
    await asyncio.sleep(0)
    queue.get_nowait()  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    await asyncio.wait_for(second, 1)
    assert queue.get_nowait().payload.startswith(b"2")


async def test_a_queued_reading_holds_a_few_hundred_bytes_not_kilobytes() -> None:
    from edged.bridge import Bridge
    from edged.model import DeviceIdentity, Reading

    device = DeviceIdentity("meter", "m-1")
    bridge = Bridge(DeviceIdentity("gw", "gw-1"), [], queue_size=5001)
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for n in range(5000):
            await bridge.emit(Reading(device, "reading", {"t": 21.5 + n, "h": 40}, 1.7e9 + n))
        per_reading = (tracemalloc.get_traced_memory()[0] - start) / 5000
    finally:
        tracemalloc.stop()
    # ~260 bytes here; orjson >= 3.11's own buffer alone would be ~4 KiB per reading.
    assert per_reading < 1024


async def test_a_producer_that_keeps_the_queue_at_its_limit_does_not_fill_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    queue = SendQueue(10, 1 << 20, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="edged.sendqueue"):
        for episode in range(5):
            for n in range(10):
                queue.put_nowait(msg(n))
            waiting = asyncio.ensure_future(queue.put(msg(99)))
            await asyncio.sleep(0)
            while not queue.empty():
                queue.get_nowait()
                await asyncio.sleep(0)
            await waiting
            now[0] += 1.0 if episode < 3 else 61.0
    assert queue.full_episodes == 5
    # The first episode, and the first after a quiet minute; the ones between at DEBUG only.
    assert [r.levelname for r in caplog.records] == ["WARNING", "INFO", "WARNING", "INFO"]
