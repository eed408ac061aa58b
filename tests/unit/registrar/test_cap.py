"""The pending cap under load, memory under a notify flood, and the registrar on a real outbox."""

from __future__ import annotations

import asyncio
import random
import tracemalloc
from pathlib import Path

import orjson

from edged.model import OutgoingMessage
from edged.outbox.outbox import Entry
from edged.registrar import Kind, Registrar, State
from tests.support.outbox import open_outbox
from tests.unit.registrar.fakes import Harness, delivery, settle

BULK = 2


def consistent(registrar: Registrar) -> None:
    counts = registrar.counts()
    assert counts["pending"] == registrar._pending <= registrar.settings.max_pending
    assert counts["waiting"] == len(registrar._waiting)


async def test_300_devices_never_exceed_the_cap_and_are_admitted_in_order(
    harness: Harness,
) -> None:
    devices = [f"t/d{n:03}" for n in range(300)]
    registrar = harness.make(devices)  # max_pending 128, the platform's cap
    admitted: list[str] = []
    sent: dict[str, asyncio.Future[None]] = {}
    rounds = 0
    while len(admitted) < 300:
        rounds += 1
        for device in devices:  # the outbox looks at every device with messages
            if device not in sent and not registrar.is_held(device):
                admitted.append(device)
                sent[device] = delivery()
                registrar.track(device, sent[device])
            consistent(registrar)
        for future in sent.values():
            if not future.done():
                future.set_result(None)
        await settle()
        harness.time.advance(registrar.settings.confirm_after)
        consistent(registrar)
    assert admitted == devices
    assert rounds == 3  # 128 + 128 + 44
    assert registrar.counts()["registered"] == 300


async def test_random_events_keep_the_books_straight(harness: Harness) -> None:
    rng = random.Random(1)
    devices = [f"t/d{n}" for n in range(60)]
    registrar = harness.make(devices, max_pending=7, limit_backoff=50.0, retry_initial=5.0)
    kinds = list(Kind)
    probes: dict[str, asyncio.Future[None]] = {}
    for _ in range(3000):
        device = rng.choice(devices)
        action = rng.random()
        if action < 0.4:
            if not registrar.is_held(device) and registrar._records[device].probe is None:
                probes[device] = delivery()
                registrar.track(device, probes[device])
        elif action < 0.6 and probes:
            future = probes.pop(rng.choice(sorted(probes)))
            if rng.random() < 0.8:
                future.set_result(None)
            else:
                future.set_exception(ConnectionError("lost"))
            await settle()
        elif action < 0.7:
            type_id, device_id = device.split("/")
            message = {
                Kind.TOPIC: "Topic does not match any allowed topic rules",
                Kind.DEVICE_TYPE: "Device type is not valid",
                Kind.DEVICE_ID: "Device ID is not valid",
                Kind.LIMIT_GATEWAY: "Maximum number of devices per gateway is reached",
                Kind.LIMIT_ORG: "Maximum number of devices per organization is reached",
                Kind.INTERNAL: "Failed to create device because of internal errors",
                Kind.UNKNOWN: "?",
            }[rng.choice(kinds)]
            registrar.handle_notify(
                orjson.dumps({"Type": type_id, "Id": device_id, "Message": message})
            )
        else:
            harness.time.advance(rng.uniform(0, 20))
        consistent(registrar)
        for record in registrar._records.values():
            assert (record.key in registrar._free) == (record.state is State.REGISTERED)
            if record.probe is not None:
                assert record.state is State.PENDING
    registrar.close()
    await settle()


async def test_a_flood_of_distinct_notify_messages_does_not_grow_memory(
    harness: Harness,
) -> None:
    registrar = harness.make(["t/a", "t/b"])

    def flood(start: int, count: int) -> None:
        for n in range(start, start + count):
            body: dict[str, object] = {"Message": f"new problem {n}", "RC": n}
            if n % 3 == 0:
                body.update(Type="t", Id=f"stranger{n}")  # an unknown device each time
            elif n % 3 == 1:
                body.update(Type="t", Id="a")  # an unknown message about a known device
            registrar.handle_notify(orjson.dumps(body))
        registrar.handle_notify(b"x" * (n % 100))

    flood(0, 2_000)  # warm up: every bounded table is full
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        flood(2_000, 98_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert registrar.notify_total == 100_002
    assert len(registrar._records) == 2
    assert len(registrar.problems.per_source) <= 257
    assert len(registrar.problems._logged) <= 1024
    assert grown < 256 * 1024


async def test_on_a_real_outbox_a_refused_probe_is_kept_and_sent_after_the_backoff(
    harness: Harness, tmp_path: Path
) -> None:
    registrar = harness.make(["t/a", "t/b"], max_pending=1, retry_initial=30.0)
    async with open_outbox(tmp_path) as outbox:
        outbox.is_held = registrar.is_held
        registrar._wake = outbox.wake
        for n in range(3):
            for device in ("t/a", "t/b"):
                outbox.put(BULK, device, OutgoingMessage(f"{device}/{n}", b"x", 1))
        await asyncio.sleep(0.05)  # committed to the disk

        def take() -> Entry | None:
            return outbox.take_nowait()

        def send(entry: Entry) -> asyncio.Future[None]:
            sent = delivery()
            outbox.sent(entry, registrar.track(entry.device, sent))
            return sent

        probe = take()
        assert probe is not None and probe.message.topic == "t/a/0"
        sent = send(probe)
        assert take() is None  # t/a's probe is out and t/b waits for the one slot
        sent.set_result(None)
        await settle()
        registrar.handle_notify(
            orjson.dumps({"Type": "t", "Id": "a", "Message": "Failed to create device"})
        )
        await settle()
        assert outbox.counters["resent"] == 1  # RegistrationRefused: kept, ahead of t/a/1
        nxt = take()
        assert nxt is not None and nxt.message.topic == "t/b/0"  # t/b got the freed slot
        send(nxt).set_result(None)
        await settle()
        harness.time.advance(10)  # t/b confirmed; t/a still backing off
        await settle()
        assert [e.message.topic for e in iter(take, None)] == ["t/b/1", "t/b/2"]
        harness.time.advance(40)  # t/a's backoff passed: its probe again, then the rest
        again = take()
        assert again is not None and again.message.topic == "t/a/0"
        send(again).set_result(None)
        await settle()
        harness.time.advance(10)
        await settle()
        assert [e.message.topic for e in iter(take, None)] == ["t/a/1", "t/a/2"]
        assert registrar.counts()["registered"] == 2
