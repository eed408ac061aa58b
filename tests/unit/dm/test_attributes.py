"""Attributes: platform overrides against local values, observe bookkeeping, the saved document."""

from __future__ import annotations

from edged.dm.attributes import FIRMWARE_PLACEHOLDER, MAX_OBSERVED, DMState, affected
from edged.model import DeviceIdentity

S1 = DeviceIdentity("sensor", "S1")
LOC = {"latitude": 1.0, "longitude": 2.0}


def test_override_holds_until_the_local_value_changes() -> None:
    state = DMState()
    attributes = state.attributes(S1)
    assert attributes.set_local("metadata", {"a": 1}) is True
    assert state.update(S1, [("metadata", {"a": 2})]) == []
    assert attributes.set_local("metadata", {"a": 1}) is False  # same config: override stands
    assert attributes.value("metadata") == {"a": 2}
    assert attributes.set_local("metadata", {"a": 3}) is True  # config edited: it wins
    assert attributes.value("metadata") == {"a": 3}


def test_update_with_an_unknown_field_applies_nothing() -> None:
    state = DMState()
    assert state.update(S1, [("metadata", {"a": 1}), ("color", "red")]) == ["color"]
    assert state.attributes(S1).value("metadata") is None


def test_read_sub_fields_and_placeholder() -> None:
    attributes = DMState().attributes(S1)
    assert attributes.read("mgmt.firmware") == (True, FIRMWARE_PLACEHOLDER)
    assert attributes.read("mgmt.firmware.state") == (True, 0)
    assert attributes.read("mgmt.firmware.nothing") == (False, None)
    assert attributes.read("location") == (False, None)
    attributes.set_local("location", LOC)
    assert attributes.read("location.latitude") == (True, 1.0)
    assert attributes.read("colour") == (False, None)


def test_observe_all_or_nothing_and_cancel() -> None:
    state = DMState()
    state.attributes(S1).set_local("location", LOC)
    found, missing = state.observe(S1, ["location", "nothing"])
    assert (found, missing) == ([], ["nothing"])
    assert state.attributes(S1).observed == []
    found, missing = state.observe(S1, ["location", "mgmt.firmware.state"])
    assert missing == []
    assert found == [
        {"field": "location", "value": LOC},
        {"field": "mgmt.firmware.state", "value": 0},
    ]
    assert affected(state.attributes(S1).observed, "mgmt.firmware") == ["mgmt.firmware.state"]
    state.cancel(S1, ["location", "never-observed"])
    assert state.attributes(S1).observed == ["mgmt.firmware.state"]


def test_observed_names_are_bounded() -> None:
    state = DMState()
    state.attributes(S1).set_local("metadata", {f"k{i}": i for i in range(100)})
    names = [f"metadata.k{i}" for i in range(MAX_OBSERVED + 1)]
    found, missing = state.observe(S1, names)
    assert found == []
    assert missing  # refused as a whole
    assert state.attributes(S1).observed == []


def test_round_trip_and_bad_documents() -> None:
    state = DMState()
    state.attributes(S1).set_local("metadata", {"a": 1})
    state.update(S1, [("metadata", {"a": 2})])
    state.observe(S1, ["metadata"])
    state.managed.add(S1)
    state.pending_action = {"action": "reboot", "reqId": "r", "at": 1.0}
    again = DMState.from_json(state.to_json())
    assert again.to_json() == state.to_json()
    assert again.attributes(S1).set_local("metadata", {"a": 1}) is False
    for bad in (
        {},
        {"format": 99, "managed": ["sensor/S1"]},
        {"format": 1, "devices": [], "managed": "x", "pending_action": 3},
        {
            "format": 1,
            "devices": {"bad key": {}, "a/b/c": {}, "t/d": {"values": [], "observed": [1]}},
        },
        {"format": 1, "managed": ["sensor/S 1", 5, "ok/dev"]},
    ):
        loaded = DMState.from_json(bad)
        assert loaded.pending_action is None
        assert all(d == DeviceIdentity("t", "d") or d == DeviceIdentity("ok", "dev")
                   for d in [*loaded.devices, *loaded.managed])  # fmt: skip
