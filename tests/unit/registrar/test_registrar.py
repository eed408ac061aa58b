"""The registrar's rules on a fake clock: cap, order, probe outcomes, backoff per kind, restart.

Delivery futures are plain asyncio futures settled by the test as the uplink would settle them;
the state file is a real file in tmp_path.
"""

from __future__ import annotations

import asyncio
import json
import logging

import orjson
import pytest

from edged.registrar import Kind, Registrar, RegistrationRefused, State
from edged.registrar import registrar as registrar_module
from edged.uplink import DeliveryLost, UplinkClosedError
from tests.unit.registrar.fakes import Harness, delivery, settle

MESSAGES = {
    Kind.TOPIC: "Topic does not match any allowed topic rules.",
    Kind.DEVICE_TYPE: "Device type is not valid.",
    Kind.DEVICE_ID: "Device ID is not valid.",
    Kind.LIMIT_GATEWAY: "Maximum number of devices per gateway is reached.",
    Kind.LIMIT_ORG: "Maximum number of devices per organization is reached.",
    Kind.INTERNAL: "Failed to create device because of internal errors.",
    Kind.UNKNOWN: "Something else went wrong.",
}


def refusal(device: str, kind: Kind = Kind.INTERNAL, rc: object = 2) -> bytes:
    type_id, device_id = device.split("/")
    return orjson.dumps(
        {
            "Request": "publish",
            "Topic": f"iot-2/type/{type_id}/id/{device_id}/evt/e/fmt/json",
            "Type": type_id,
            "Id": device_id,
            "RC": rc,
            "Message": MESSAGES[kind],
        }
    )


def state(registrar: Registrar, device: str) -> State:
    return registrar._records[device].state


async def probe(
    registrar: Registrar, device: str
) -> tuple[asyncio.Future[None], asyncio.Future[None]]:
    """Let ``device``'s first message out: (its delivery, the future the outbox waits on)."""
    assert registrar.is_held(device) is False
    sent = delivery()
    return sent, registrar.track(device, sent)


async def register(harness: Harness, registrar: Registrar, device: str) -> None:
    sent, waited = await probe(registrar, device)
    sent.set_result(None)
    await settle()
    harness.time.advance(registrar.settings.confirm_after)
    await settle()
    assert waited.result() is None
    assert state(registrar, device) is State.REGISTERED


async def test_gateway_and_registered_devices_are_never_held(harness: Harness) -> None:
    registrar = harness.make(["t/a"])
    assert registrar.is_held("gw/g1") is False
    sent = delivery()
    assert registrar.track("gw/g1", sent) is sent
    await register(harness, registrar, "t/a")
    sent = delivery()
    assert registrar.is_held("t/a") is False
    assert registrar.track("t/a", sent) is sent


async def test_a_probe_is_confirmed_after_the_window(harness: Harness) -> None:
    registrar = harness.make(["t/a"])
    sent, waited = await probe(registrar, "t/a")
    assert waited is not sent
    assert registrar.is_held("t/a") is True  # the others wait for the probe
    sent.set_result(None)
    await settle()
    assert registrar.is_held("t/a") is True  # acknowledged, not yet confirmed
    harness.time.advance(9.9)
    assert not waited.done()
    wakes = harness.wakes
    harness.time.advance(0.1)
    assert waited.done() and waited.result() is None
    assert registrar.is_held("t/a") is False
    assert harness.wakes > wakes
    assert registrar.counts()["registered"] == 1


async def test_a_refusal_in_the_window_fails_the_probe_and_holds_the_device(
    harness: Harness,
) -> None:
    registrar = harness.make(["t/a"], retry_initial=60.0)
    sent, waited = await probe(registrar, "t/a")
    sent.set_result(None)
    await settle()
    harness.time.advance(5)
    registrar.handle_notify(refusal("t/a", Kind.INTERNAL))
    with pytest.raises(RegistrationRefused) as refused:
        waited.result()
    assert refused.value.kind is Kind.INTERNAL
    assert state(registrar, "t/a") is State.FAILED
    harness.time.advance(3600)  # the confirm timer was cancelled with the refusal...
    assert state(registrar, "t/a") is not State.REGISTERED


async def test_a_refused_device_is_held_until_its_backoff_passed(harness: Harness) -> None:
    registrar = harness.make(["t/a"], retry_initial=60.0)
    sent, waited = await probe(registrar, "t/a")
    registrar.handle_notify(refusal("t/a", Kind.INTERNAL))  # before the broker answered
    assert isinstance(waited.exception(), RegistrationRefused)
    sent.set_result(None)  # the late acknowledgement changes nothing
    await settle()
    until = registrar._records["t/a"].until - harness.time.now
    assert 48 <= until <= 72  # 60 s ± 20 %
    harness.time.advance(until - 0.01)
    assert registrar.is_held("t/a") is True
    wakes = harness.wakes
    harness.time.advance(0.02)
    assert harness.wakes == wakes + 1
    assert state(registrar, "t/a") is State.UNKNOWN
    await register(harness, registrar, "t/a")


async def test_internal_errors_back_off_doubling_up_to_the_maximum(harness: Harness) -> None:
    registrar = harness.make(["t/a"], retry_initial=10.0, retry_max=100.0)
    delays = []
    for _ in range(6):
        sent, waited = await probe(registrar, "t/a")
        registrar.handle_notify(refusal("t/a", Kind.INTERNAL))
        sent.set_result(None)
        assert isinstance(waited.exception(), RegistrationRefused)
        delays.append(registrar._records["t/a"].until - harness.time.now)
        harness.time.advance(delays[-1])
    bases = [10, 20, 40, 80, 100, 100]
    assert all(0.8 * b <= d <= min(1.2 * b, 100) for b, d in zip(bases, delays, strict=True))
    await register(harness, registrar, "t/a")
    assert registrar._records["t/a"].attempts == 0  # a registration resets the backoff


async def test_a_delivery_failure_is_passed_on_and_the_probe_goes_again(
    harness: Harness,
) -> None:
    registrar = harness.make(["t/a"])
    sent, waited = await probe(registrar, "t/a")
    error = DeliveryLost("paho let go of it")
    sent.set_exception(error)
    await settle()
    assert waited.exception() is error
    assert state(registrar, "t/a") is State.PENDING
    assert registrar.is_held("t/a") is False  # the outbox resends it
    await register(harness, registrar, "t/a")


async def test_a_cancelled_delivery_cancels_the_probe(harness: Harness) -> None:
    registrar = harness.make(["t/a"])
    sent, waited = await probe(registrar, "t/a")
    sent.cancel()
    await settle()
    assert waited.cancelled()
    assert registrar.is_held("t/a") is False


@pytest.mark.parametrize("kind", [Kind.DEVICE_TYPE, Kind.DEVICE_ID])
async def test_an_invalid_type_or_id_holds_the_device_for_good(
    harness: Harness, kind: Kind, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = harness.make(["t/a", "t/b"])
    _, waited = await probe(registrar, "t/a")
    with caplog.at_level(logging.DEBUG, logger="edged.notify"):
        registrar.handle_notify(refusal("t/a", kind))
        registrar.handle_notify(refusal("t/a", kind))
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.DEBUG]
    assert isinstance(waited.exception(), RegistrationRefused)
    harness.time.advance(30 * 86400)
    assert registrar.is_held("t/a") is True
    assert registrar.counts()["permanent"] == 1
    (listed,) = registrar.device_states(5, registered=False)[:1]
    assert listed == {"device": "t/a", "state": "permanent", "detail": MESSAGES[kind]}
    assert registrar.is_held("t/b") is False  # a problem of that device only


@pytest.mark.parametrize("kind", [Kind.LIMIT_GATEWAY, Kind.LIMIT_ORG])
async def test_a_limit_holds_new_devices_but_not_registered_ones(
    harness: Harness, kind: Kind
) -> None:
    registrar = harness.make(["t/old", "t/a", "t/b", "t/c"], limit_backoff=1000.0)
    await register(harness, registrar, "t/old")
    assert registrar.is_held("t/b") is False  # admitted before the limit, not yet sent
    _, waited = await probe(registrar, "t/a")
    registrar.handle_notify(refusal("t/a", kind))
    assert isinstance(waited.exception(), RegistrationRefused)
    assert registrar.is_held("t/old") is False
    assert registrar.is_held("t/b") is True
    assert registrar.is_held("t/c") is True
    assert state(registrar, "t/c") is State.WAITING
    assert 900 <= registrar.limited_for <= 1100
    shown = {d["device"]: d for d in registrar.device_states(10)}
    assert shown["t/c"]["retry_in"] == round(registrar.limited_for, 1)
    harness.time.advance(registrar.limited_for)
    assert registrar.limited_for == 0
    assert registrar.is_held("t/b") is False
    assert registrar.is_held("t/c") is False
    assert registrar.counts()["pending"] == 2


async def test_an_unknown_message_is_logged_once_and_retried(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = harness.make(["t/a"], retry_initial=60.0)
    with caplog.at_level(logging.DEBUG, logger="edged.notify"):
        _, waited = await probe(registrar, "t/a")
        registrar.handle_notify(refusal("t/a", Kind.UNKNOWN))
        registrar.handle_notify(refusal("t/a", Kind.UNKNOWN))
    assert [r.levelno for r in caplog.records] == [logging.WARNING, logging.DEBUG]
    assert "retried with backoff" in caplog.records[0].getMessage()
    assert isinstance(waited.exception(), RegistrationRefused)
    assert state(registrar, "t/a") is State.FAILED
    harness.time.advance(73)
    assert registrar.is_held("t/a") is False
    assert registrar.counters[Kind.UNKNOWN] == 2


async def test_a_topic_refusal_is_logged_loudly_once_and_changes_no_state(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = harness.make(["t/a"])
    _, waited = await probe(registrar, "t/a")
    with caplog.at_level(logging.DEBUG, logger="edged.notify"):
        for _ in range(3):
            registrar.handle_notify(refusal("t/a", Kind.TOPIC))
    assert [r.levelno for r in caplog.records] == [logging.ERROR] + [logging.DEBUG] * 2
    assert "iot-2/type/t/id/a/evt/e/fmt/json" in caplog.records[0].getMessage()
    assert registrar.counters[Kind.TOPIC] == 3
    assert not waited.done()
    assert state(registrar, "t/a") is State.PENDING


async def test_a_notify_without_type_and_id_is_counted_and_logged_once(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = harness.make(["t/a"])
    payload = orjson.dumps({"Topic": "iot-2/bad", "RC": "9", "Message": MESSAGES[Kind.INTERNAL]})
    with caplog.at_level(logging.DEBUG, logger="edged.notify"):
        registrar.handle_notify(payload)
        registrar.handle_notify(payload)
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.DEBUG]
    assert registrar.counters["no_device"] == 2
    assert registrar.problems.summary() == {"total": 2, "sources": 1, "top": {"?": 2}}


async def test_bad_input_is_logged_once_per_kind_and_ignored(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = harness.make(["t/a"])
    bad = [b"garbage", b"garbage!", b"[]", b"1", b"{" + b" " * 70_000 + b"}"]
    with caplog.at_level(logging.WARNING, logger="edged.notify"):
        for payload in bad * 3:
            registrar.handle_notify(payload)
        registrar.handle_notify(refusal("t/zzz"))
        registrar.handle_notify(refusal("t/yyy"))
        registrar.handle_notify(refusal("gw/g1"))
    assert len(caplog.records) == 3 + 1 + 1  # not JSON, not object, too large; unknown; gateway
    assert registrar.counters["unknown_device"] == 2
    assert registrar.counters["gateway"] == 1
    assert registrar.notify_total == 18
    assert "t/zzz" not in registrar._records
    assert state(registrar, "t/a") is State.UNKNOWN


async def test_notify_handling_never_raises(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registrar = harness.make(["t/a"])

    def broken(payload: bytes) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(registrar, "_handle", broken)
    with caplog.at_level(logging.ERROR):
        registrar.handle_notify(b"{}")
        registrar.handle_notify(b"{}")
    assert registrar.counters["errors"] == 2
    assert len(caplog.records) == 1


async def test_a_registered_device_refused_later_is_held_and_forgotten_on_disk(
    harness: Harness,
) -> None:
    registrar = harness.make(["t/a", "t/b"])
    await register(harness, registrar, "t/a")
    await register(harness, registrar, "t/b")
    harness.time.advance(registrar_module.SAVE_DELAY)
    await registrar.state_file.flush()
    assert json.loads(harness.path.read_text())["registered"] == ["t/a", "t/b"]
    registrar.handle_notify(refusal("t/a", Kind.INTERNAL))
    assert registrar.is_held("t/a") is True
    harness.time.advance(registrar_module.SAVE_DELAY)
    await registrar.state_file.flush()
    assert json.loads(harness.path.read_text()) == {"version": 1, "registered": ["t/b"]}
    harness.time.advance(100)
    assert registrar.is_held("t/a") is False  # back through the cap, as a new device


async def test_a_restart_does_not_hold_registered_devices(harness: Harness) -> None:
    first = harness.make(["t/a", "t/b", "t/c"])
    await register(harness, first, "t/a")
    await register(harness, first, "t/b")
    first.close()
    await first.state_file.flush()

    second = harness.make(["t/b", "t/c", "t/d"], max_pending=1)  # t/a no longer configured
    second.load()
    assert second.is_held("t/b") is False
    assert second.track("t/b", sent := delivery()) is sent
    assert second.counts()["registered"] == 1
    assert second.is_held("t/c") is False  # pending: its probe goes
    assert second.is_held("t/d") is True  # the cap (1) is full
    await register(harness, second, "t/c")
    harness.time.advance(registrar_module.SAVE_DELAY)
    await second.state_file.flush()
    assert orjson.loads(harness.path.read_bytes())["registered"] == ["t/b", "t/c"]


@pytest.mark.parametrize(
    "content",
    [
        b"{}",
        b'{"version": 2, "registered": ["t/a"]}',
        b'{"version": 1, "registered": "t/a"}',
        b'{"version": 1, "registered": [1, null, ["t/a"]]}',
        b"not json",
    ],
)
async def test_an_unusable_state_file_means_registering_again(
    harness: Harness, content: bytes
) -> None:
    harness.path.write_bytes(content)
    registrar = harness.make(["t/a"])
    registrar.load()
    assert registrar.counts()["registered"] == 0
    assert state(registrar, "t/a") is State.UNKNOWN


async def test_the_cap_admits_in_arrival_order(harness: Harness) -> None:
    registrar = harness.make(["t/a", "t/b", "t/c", "t/d", "t/e"], max_pending=2)
    assert registrar.is_held("t/a") is False
    assert registrar.is_held("t/b") is False
    for device in ("t/e", "t/c", "t/d"):
        assert registrar.is_held(device) is True
    assert registrar.counts() == {
        "unknown": 0,
        "waiting": 3,
        "pending": 2,
        "registered": 0,
        "failed": 0,
        "permanent": 0,
    }
    wakes = harness.wakes
    await register(harness, registrar, "t/a")
    assert state(registrar, "t/e") is State.PENDING
    assert harness.wakes > wakes
    _, waited = await probe(registrar, "t/b")
    registrar.handle_notify(refusal("t/b"))  # a refusal frees the slot too
    assert isinstance(waited.exception(), RegistrationRefused)
    assert state(registrar, "t/c") is State.PENDING
    assert state(registrar, "t/d") is State.WAITING


async def test_a_new_device_queues_behind_waiting_ones(harness: Harness) -> None:
    registrar = harness.make(["t/a", "t/b", "t/c"], max_pending=1)
    registrar.is_held("t/a")
    registrar.is_held("t/b")
    assert list(registrar._waiting) == ["t/b"]
    registrar.is_held("t/c")
    assert list(registrar._waiting) == ["t/b", "t/c"]


async def test_an_admitted_device_that_sends_nothing_gives_its_slot_back(
    harness: Harness,
) -> None:
    registrar = harness.make(["t/a", "t/b", "t/c"], max_pending=1)
    assert registrar.is_held("t/a") is False  # taken
    harness.time.advance(registrar_module.ADMISSION_LEASE)
    # t/a's message may still be with the forwarder (waiting for the uplink): slot kept
    assert state(registrar, "t/a") is State.PENDING
    assert registrar.is_held("t/b") is True  # the outbox looks again: that take is settled
    assert registrar.is_held("t/c") is True
    harness.time.advance(registrar_module.ADMISSION_LEASE)
    assert state(registrar, "t/a") is State.UNKNOWN  # say its messages had all expired
    assert state(registrar, "t/b") is State.PENDING
    assert list(registrar._waiting) == ["t/c"]


async def test_a_probe_sent_after_its_slot_was_given_back_still_counts(
    harness: Harness,
) -> None:
    registrar = harness.make(["t/a", "t/b"], max_pending=1)
    registrar.is_held("t/a")
    registrar.is_held("t/b")  # the outbox looked again: t/a's take counts as settled
    harness.time.advance(registrar_module.ADMISSION_LEASE)
    assert state(registrar, "t/a") is State.UNKNOWN
    sent = delivery()
    waited = registrar.track("t/a", sent)
    assert waited is not sent
    assert state(registrar, "t/a") is State.PENDING
    sent.set_result(None)
    await settle()
    harness.time.advance(10)
    assert waited.result() is None


async def test_a_message_taken_just_before_a_refusal_is_kept(harness: Harness) -> None:
    registrar = harness.make(["t/a"])
    await register(harness, registrar, "t/a")
    registrar.handle_notify(refusal("t/a"))
    sent = delivery()
    waited = registrar.track("t/a", sent)
    assert isinstance(waited.exception(), RegistrationRefused)
    sent.set_exception(DeliveryLost("x"))
    await settle()  # retrieved: no "exception never retrieved" warning


async def test_close_leaves_unconfirmed_probes_for_the_next_start(harness: Harness) -> None:
    registrar = harness.make(["t/a", "t/b"])
    sent, waited = await probe(registrar, "t/a")
    sent.set_result(None)
    await settle()
    registrar.is_held("t/b")
    registrar.close()
    assert isinstance(waited.exception(), UplinkClosedError)
    assert harness.time.live_timers == 0
    registrar.handle_notify(refusal("t/b"))  # after close: no timer started
    assert harness.time.live_timers == 0


async def test_unconfigured_devices_are_tracked_up_to_a_bound(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registrar_module, "MAX_UNCONFIGURED", 3)
    registrar = harness.make([], max_pending=128)
    assert [registrar.is_held(f"x/{n}") for n in range(5)] == [False] * 3 + [True] * 2
    assert len(registrar._records) == 3
    await register(harness, registrar, "x/0")
    harness.time.advance(registrar_module.SAVE_DELAY)
    await registrar.state_file.flush()
    assert orjson.loads(harness.path.read_bytes())["registered"] == []  # not persisted


async def test_summary_is_bounded(harness: Harness) -> None:
    devices = [f"t/d{n}" for n in range(300)]
    registrar = harness.make(devices, max_pending=5)
    for device in devices:
        registrar.is_held(device)
    summary = registrar.summary()
    assert len(summary["devices"]) == registrar_module.MAX_LISTED
    assert summary["counts"]["waiting"] == 295
    assert len(orjson.dumps(summary)) < 4096
