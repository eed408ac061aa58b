"""Manage, renewal, retry with backoff, unmanage; response matching by reqId (fake clock)."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from edged.dm.lifecycle import MAX_AWAITING, Awaiting, Lifecycle, Status, renewal_delay
from edged.model import DeviceIdentity

GW = DeviceIdentity("gw", "GW1")
S1 = DeviceIdentity("sensor", "S1")
OLD = DeviceIdentity("sensor", "OLD")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Rig:
    def __init__(self) -> None:
        self.clock = Clock()
        self.awaiting = Awaiting(self.clock)
        self.sent: list[tuple[DeviceIdentity, str, Any, str]] = []
        self.managed: list[DeviceIdentity] = []
        self.unmanaged: list[DeviceIdentity] = []
        self.life = Lifecycle(
            self.send, clock=self.clock, on_managed=self.managed.append,
            on_unmanaged=self.unmanaged.append,
        )  # fmt: skip

    def send(self, device: DeviceIdentity, suffix: str, d: Any, req_id: str, on: Any) -> None:
        self.sent.append((device, suffix, d, req_id))
        self.awaiting.expect(req_id, device, suffix, 5.0, on)

    def answer_last(self, device: DeviceIdentity, rc: int) -> None:
        req_id = next(r for d, _, _, r in reversed(self.sent) if d == device)
        assert self.awaiting.answer(device, req_id, rc, None)


def test_renewal_delay() -> None:
    assert renewal_delay(0) is None
    assert renewal_delay(3600) == 3240  # 10 %
    assert renewal_delay(86400) == 86400 - 8640
    assert renewal_delay(600) == 540  # at least 60 s early
    assert renewal_delay(100) == 50  # but no more than half the lifetime
    assert renewal_delay(0.2) == pytest.approx(0.1)


def test_manage_renew_and_nothing_before_connect() -> None:
    rig = Rig()
    rig.life.want(GW, 3600, lambda: {"lifetime": 3600})
    rig.life.tick()
    assert rig.life.next_due() is None and rig.sent == []
    rig.life.connected()
    assert [(d, s, b) for d, s, b, _ in rig.sent] == [(GW, "mgmt/manage", {"lifetime": 3600})]
    rig.answer_last(GW, 200)
    assert rig.managed == [GW]
    standing = rig.life.standings[GW]
    assert (standing.status, standing.due, standing.expires) == (Status.MANAGED, 3340.0, 3700.0)
    rig.clock.now = 3339
    rig.life.tick()
    assert len(rig.sent) == 1
    rig.clock.now = 3340
    rig.life.tick()
    assert len(rig.sent) == 2 and rig.sent[0][3] != rig.sent[1][3]  # a fresh reqId


def test_lifetime_zero_is_never_renewed() -> None:
    rig = Rig()
    rig.life.want(GW, 0, dict)
    rig.life.connected()
    rig.answer_last(GW, 200)
    assert rig.life.next_due() is None


def test_refusal_retried_with_growing_delay_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    rig = Rig()
    rig.life.want(S1, 3600, dict)
    rig.life.connected()
    delays = []
    with caplog.at_level(logging.DEBUG, "edged.dm.lifecycle"):
        for _ in range(4):
            rig.answer_last(S1, 409)
            due = rig.life.next_due()
            assert due is not None
            delays.append(due - rig.clock.now)
            rig.clock.now = due
            rig.life.tick()
    assert len(rig.sent) == 5
    assert delays == sorted(delays) and delays[-1] > 2 * delays[0]
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "409" in warnings[0].getMessage()
    assert rig.life.standings[S1].refusals == 4


def test_no_response_is_retried() -> None:
    rig = Rig()
    rig.life.want(S1, 3600, dict)
    rig.life.connected()
    rig.clock.now += 5
    rig.awaiting.expire()
    standing = rig.life.standings[S1]
    assert standing.status == Status.RETRYING and standing.timeouts == 1
    rig.clock.now = rig.life.next_due() or 0
    rig.life.tick()
    assert len(rig.sent) == 2
    rig.answer_last(S1, 200)
    assert standing.status == Status.MANAGED  # type: ignore[comparison-overlap]  # mypy narrowed it


def test_a_stale_answer_is_ignored() -> None:
    rig = Rig()
    rig.life.want(S1, 3600, dict)
    rig.life.connected()
    first = rig.sent[0][3]
    rig.life.connected()  # reconnect: a new manage
    assert rig.awaiting.answer(S1, first, 500, None)
    assert rig.life.standings[S1].status == Status.MANAGING  # the old answer changed nothing
    rig.answer_last(S1, 200)
    assert rig.life.standings[S1].status == Status.MANAGED


def test_unmanage_until_acknowledged() -> None:
    rig = Rig()
    rig.life.want(GW, 3600, dict)
    rig.life.let_go({OLD, GW})
    rig.life.connected()
    assert [(d, s) for d, s, _, _ in rig.sent] == [(GW, "mgmt/manage"), (OLD, "mgmt/unmanage")]
    rig.answer_last(OLD, 500)
    assert rig.unmanaged == [] and rig.life.leaving == {OLD}
    rig.life.connected()
    rig.answer_last(OLD, 200)
    assert rig.unmanaged == [OLD] and rig.life.leaving == set()
    assert "unmanaging" not in str(rig.life.snapshot(0.0))


def test_awaiting_matches_device_and_is_bounded() -> None:
    clock = Clock()
    awaiting = Awaiting(clock)
    got: list[Any] = []
    awaiting.expect("r", S1, "notify", 1.0, lambda rc, m: got.append(rc))
    assert not awaiting.answer(GW, "r", 200, None)  # same reqId, other device
    assert not awaiting.answer(S1, "x", 200, None)
    assert awaiting.answer(S1, "r", 200, None) and got == [200]
    for i in range(MAX_AWAITING + 1):
        awaiting.expect(str(i), S1, "notify", 1.0, lambda rc, m: got.append(rc))
    assert len(awaiting) == MAX_AWAITING and got == [200, None]
    clock.now += 1
    awaiting.expire()
    assert len(awaiting) == 0
