"""Report-on-change with minimum and maximum intervals."""

from __future__ import annotations

import pytest

from edged.adapters.ble.gate import ReportGate

pytestmark = pytest.mark.ble


def test_first_values_pass_and_repeats_do_not() -> None:
    gate = ReportGate(ignore=("rssi",))
    assert gate.offer({"t": 20, "rssi": -60}, 0.0) == {"t": 20, "rssi": -60}
    assert gate.offer({"t": 20, "rssi": -75}, 1.0) is None, "RSSI alone is not a change"
    assert gate.offer({"t": 21, "rssi": -75}, 2.0) == {"t": 21, "rssi": -75}
    assert gate.offer({"t": 21, "h": 40, "rssi": -75}, 3.0) is not None, "a new key is a change"
    assert gate.offer({"h": 40, "rssi": -75}, 4.0) is not None, "a vanished key is a change"


def test_min_interval_holds_the_latest_change_until_due() -> None:
    gate = ReportGate(min_interval=10.0)
    assert gate.offer({"t": 1}, 0.0) == {"t": 1}
    assert gate.offer({"t": 2}, 3.0) is None
    assert gate.offer({"t": 3}, 4.0) is None
    assert gate.due(9.9) is None
    assert gate.due(10.0) == {"t": 3}
    assert gate.due(30.0) is None, "sent once"


def test_a_change_that_reverts_inside_the_interval_is_dropped() -> None:
    gate = ReportGate(min_interval=10.0)
    gate.offer({"t": 1}, 0.0)
    assert gate.offer({"t": 2}, 3.0) is None
    assert gate.offer({"t": 1}, 4.0) is None
    assert gate.due(11.0) is None


def test_max_interval_repeats_unchanged_values() -> None:
    gate = ReportGate(min_interval=1.0, max_interval=60.0)
    gate.offer({"t": 1}, 0.0)
    assert gate.offer({"t": 1}, 59.0) is None
    assert gate.offer({"t": 1}, 60.0) == {"t": 1}
    assert gate.offer({"t": 1}, 61.0) is None


def test_every_mode_still_respects_min_interval() -> None:
    gate = ReportGate(on_change=False, min_interval=2.0)
    assert gate.offer({"t": 1}, 0.0) == {"t": 1}
    assert gate.offer({"t": 1}, 1.0) is None
    assert gate.due(2.0) == {"t": 1}
    assert gate.offer({"t": 1}, 4.5) == {"t": 1}


def test_force_publishes_at_once() -> None:
    gate = ReportGate(min_interval=10.0)
    gate.offer({"button": "press"}, 0.0)
    assert gate.offer({"button": "press"}, 1.0, force=True) == {"button": "press"}
