"""The reconnect policy: delays, log levels and takeover detection, without any network."""

from __future__ import annotations

import logging
import random

from edged.uplink.connect import ConnectError, FailureKind
from edged.uplink.policy import QUICK_DROPS_FOR_TAKEOVER, ReconnectPolicy

UNREACHABLE = ConnectError(FailureKind.UNREACHABLE, "h:1 refused the connection")
BAD_TOKEN = ConnectError(FailureKind.REFUSED_AUTH, "the broker refused the gateway's token")


def _policy(**overrides: float) -> ReconnectPolicy:
    values = {
        "reconnect_initial": 1.0,
        "reconnect_max": 120.0,
        "refused_initial": 60.0,
        "refused_max": 900.0,
        "stable_after": 10.0,
    } | overrides
    return ReconnectPolicy(client_id="g:o:t:i", endpoint="h:1", rng=random.Random(3), **values)


def _suspected(policy: ReconnectPolicy) -> bool:
    return policy.suspected_takeover  # a call, so mypy does not keep the earlier narrowing


def _within(delay: float, base: float) -> bool:
    return base * 0.8 - 1e-9 <= delay <= base * 1.2 + 1e-9


def test_network_failures_back_off_exponentially_and_log_once() -> None:
    policy = _policy()
    steps = [policy.attempt_failed(UNREACHABLE) for _ in range(9)]
    for step, base in zip(steps, [1, 2, 4, 8, 16, 32, 64, 120, 120], strict=True):
        assert _within(step.delay, base) or step.delay == 120
    assert [s.level for s in steps] == [logging.WARNING] + [logging.DEBUG] * 8
    level, message = policy.connected(session_present=False)
    assert level == logging.INFO
    assert "after 9 failed attempt(s)" in message


def test_refusals_use_the_slow_schedule_and_log_one_error() -> None:
    policy = _policy()
    steps = [policy.attempt_failed(BAD_TOKEN) for _ in range(6)]
    assert [s.level for s in steps] == [logging.ERROR] + [logging.DEBUG] * 5
    assert _within(steps[0].delay, 60)
    assert _within(steps[1].delay, 120)
    assert steps[-1].delay <= 900
    assert "refused the gateway's token" in (steps[0].message or "")


def test_a_new_kind_of_problem_is_logged_again() -> None:
    policy = _policy()
    assert policy.attempt_failed(UNREACHABLE).level == logging.WARNING
    assert policy.attempt_failed(BAD_TOKEN).level == logging.ERROR
    assert policy.attempt_failed(UNREACHABLE).level == logging.WARNING


def test_a_drop_right_after_connack_does_not_reset_the_backoff() -> None:
    policy = _policy(stable_after=10.0)
    for _ in range(4):
        policy.attempt_failed(UNREACHABLE)  # 1, 2, 4, 8
    policy.connected(session_present=False)
    step = policy.connection_ended(0.2, "closed", keepalive=True)
    assert _within(step.delay, 16), step.delay


def test_a_stable_connection_resets_the_backoff_and_its_loss_is_a_warning() -> None:
    policy = _policy()
    for _ in range(5):
        policy.attempt_failed(UNREACHABLE)
    policy.connected(session_present=True)
    step = policy.connection_ended(3600.0, "closed by the broker or the network")
    assert _within(step.delay, 1)
    assert step.level == logging.WARNING
    assert policy.connected(session_present=True)[0] == logging.INFO


def test_repeated_quick_closes_mean_another_client_uses_the_id() -> None:
    policy = _policy(stable_after=10.0, reconnect_initial=0.5)
    policy.connected(session_present=False)
    levels = []
    for _ in range(QUICK_DROPS_FOR_TAKEOVER):
        step = policy.connection_ended(0.5, "closed")
        levels.append(step.level)
        policy.connected(session_present=False)
    assert levels == [logging.WARNING, logging.DEBUG, logging.ERROR]
    assert policy.suspected_takeover
    assert "another client is using client id g:o:t:i" in (step.message or "")
    assert _within(step.delay, 60), "the slow schedule, not the 0.5 s one"
    # Still clashing: quiet, and slower.
    again = policy.connection_ended(30.0, "closed")
    assert again.level == logging.DEBUG
    assert _within(again.delay, 120)
    # A connection that lasts past the clear-off time ends the suspicion.
    policy.connected(session_present=True)
    assert policy.suspects_takeover(uptime=899.0)
    assert not policy.suspects_takeover(uptime=901.0)
    healed = policy.connection_ended(901.0, "closed")
    assert not _suspected(policy)
    assert healed.level == logging.WARNING
    assert _within(healed.delay, 0.5)


def test_keepalive_timeouts_and_failed_attempts_break_the_quick_drop_streak() -> None:
    policy = _policy()
    for _ in range(5):
        policy.connected(session_present=False)
        policy.connection_ended(0.5, "no answer", keepalive=True)
        policy.connected(session_present=False)
        policy.connection_ended(0.5, "closed")
        policy.attempt_failed(UNREACHABLE)
    assert not policy.suspected_takeover


def test_session_taken_over_is_reported_at_once() -> None:
    policy = _policy()
    policy.connected(session_present=False)
    step = policy.connection_ended(120.0, "DISCONNECT", taken_over=True)
    assert policy.suspected_takeover
    assert step.level == logging.ERROR
    assert "session taken over" in (step.message or "")
    assert _within(step.delay, 60)
    assert policy.connected(session_present=True)[0] == logging.DEBUG


def test_two_different_problems_of_one_kind_are_both_reported() -> None:
    policy = _policy()
    untrusted = ConnectError(FailureKind.TLS, "TLS: the certificate of h:1 is not trusted")
    handshake = ConnectError(FailureKind.TLS, "TLS handshake with h:1 failed")
    assert policy.attempt_failed(handshake).level == logging.ERROR
    assert policy.attempt_failed(untrusted).level == logging.ERROR
    assert policy.attempt_failed(untrusted).level == logging.DEBUG
