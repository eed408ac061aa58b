"""The serial device state rule: from the signs of life the config names, never from any byte."""

from __future__ import annotations

from edged.adapters.serial.liveness import Liveness
from edged.model import DeviceState

ONLINE, OFFLINE, DOWN = DeviceState.ONLINE, DeviceState.OFFLINE, DeviceState.DOWN


def make(*, polled: bool = False, idle_timeout: float | None = None) -> Liveness:
    liveness = Liveness(polled=polled, idle_timeout=idle_timeout, stable_after=10.0)
    liveness.opened(confirmed=True)
    return liveness


def test_a_device_without_signs_is_online_while_the_port_is_open() -> None:
    liveness = make()
    assert liveness.state() == (ONLINE, "")
    assert not liveness.received()  # nothing to change: the per-chunk path stays cheap
    liveness.silent()
    assert liveness.state() == (ONLINE, "")


def test_a_polled_device_follows_its_polls_not_the_bytes_it_sends() -> None:
    liveness = make(polled=True)
    assert liveness.state() == (ONLINE, "")  # assumed alive until a poll says otherwise
    liveness.poll_done(False, "no reply to any query")
    assert liveness.state() == (OFFLINE, "no reply to any query")
    assert not liveness.received()  # streamed lines are not answers
    assert liveness.state() == (OFFLINE, "no reply to any query")
    liveness.poll_done(True)
    assert liveness.state() == (ONLINE, "")


def test_a_streaming_device_follows_its_idle_timeout() -> None:
    liveness = make(idle_timeout=5.0)
    liveness.silent()
    assert liveness.state() == (OFFLINE, "nothing received for 5 s")
    assert liveness.received()
    assert liveness.state() == (ONLINE, "")


def test_a_polled_and_streaming_device_is_online_while_either_sign_is_present() -> None:
    liveness = make(polled=True, idle_timeout=5.0)
    liveness.poll_done(False, "write timed out after 2 s")
    assert liveness.state() == (ONLINE, "")  # still streaming
    liveness.silent()
    assert liveness.state() == (OFFLINE, "write timed out after 2 s; nothing received for 5 s")
    liveness.poll_done(True)
    assert liveness.state() == (ONLINE, "")


def test_a_reopened_port_in_a_failure_episode_is_down_until_it_proves_itself() -> None:
    liveness = make(polled=True)
    liveness.opened(confirmed=False)
    state, detail = liveness.state()
    assert state is DOWN
    assert "waiting for data or 10 s without a loss" in detail
    assert liveness.received()
    assert liveness.state() == (ONLINE, "")
    liveness.opened(confirmed=False)
    liveness.confirm()  # stayed open long enough, without data
    assert liveness.state() == (ONLINE, "")


def test_each_open_starts_with_the_signs_present() -> None:
    liveness = make(polled=True, idle_timeout=5.0)
    liveness.poll_done(False, "no reply to any query")
    liveness.silent()
    liveness.opened(confirmed=True)
    assert liveness.state() == (ONLINE, "")
