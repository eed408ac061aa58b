"""The registry, the DM state machine, the answer policy and the notify body (all pure)."""

from __future__ import annotations

import pytest

from edged.emulator import dmrules as dm
from edged.emulator import notify
from edged.emulator.answers import Answer, AnswerPolicy
from edged.emulator.records import DMExchange, DMMessage, ManagedState, ReceivedEvent
from edged.emulator.registry import DeviceRegistry, apply_request
from edged.model import DeviceIdentity

DEV = DeviceIdentity("modbus-meter", "boiler-1")
OTHER = DeviceIdentity("pump", "pump-7")


def event(name: str, at: float, data: object) -> ReceivedEvent:
    topic = f"iot-2/type/modbus-meter/id/boiler-1/evt/{name}/fmt/json"
    return ReceivedEvent(DEV, name, "json", topic, b"", data, 1, False, at)


def test_registry_counts_and_keeps_the_last_event_per_name() -> None:
    registry = DeviceRegistry()
    registry.saw_event(event("reading", 10.0, {"d": {"t": 1}}))
    registry.saw_event(event("reading", 11.0, {"d": {"t": 2}}))
    registry.saw_event(event("alarm", 12.0, {"d": {}}))
    registry.saw_dm(DEV, 13.0)
    record = registry.get(DEV)
    assert record is not None
    assert (record.first_seen, record.last_seen) == (10.0, 13.0)
    assert (record.event_count, record.dm_count) == (3, 1)
    assert record.last_events["reading"].values == {"t": 2}
    assert registry.get(OTHER) is None
    snapshot = registry.snapshot()
    registry.clear()
    assert snapshot[DEV] == record
    assert registry.snapshot() == {}


def test_manage_lifetime_and_dormancy() -> None:
    state = apply_request(
        ManagedState(),
        dm.MANAGE,
        {"d": {"lifetime": 3600, "supports": {"deviceActions": True}, "metadata": {"a": 1}}},
        100.0,
    )
    assert state.is_managed(100.0)
    assert state.is_managed(3699.9)
    assert not state.is_managed(3700.0)  # dormant: no new manage within the lifetime
    assert (state.lifetime, state.managed_at, state.expires_at) == (3600, 100.0, 3700.0)
    assert state.supports == {"deviceActions": True}

    renewed = apply_request(state, dm.MANAGE, {"d": {}}, 200.0)
    assert renewed.is_managed(1e12)  # lifetime 0: never dormant
    assert renewed.supports == {}
    assert renewed.metadata == {"a": 1}  # kept when not sent

    assert not apply_request(renewed, dm.UNMANAGE, {}, 300.0).is_managed(300.0)


def test_location_diagnostics_and_unknown_suffixes() -> None:
    state = ManagedState()
    state = apply_request(state, dm.LOCATION, {"d": {"latitude": 1, "longitude": 2}}, 1)
    state = apply_request(state, dm.ADD_ERROR_CODE, {"d": {"errorCode": 3}}, 1)
    state = apply_request(state, dm.ADD_ERROR_CODE, {"d": {"errorCode": "x"}}, 1)
    state = apply_request(state, dm.ADD_LOG, {"d": {"message": "m"}}, 1)
    assert state.location == {"latitude": 1, "longitude": 2}
    assert state.error_codes == (3,)
    assert state.logs == ({"message": "m"},)
    state = apply_request(state, dm.CLEAR_ERROR_CODES, {}, 1)
    state = apply_request(state, dm.CLEAR_LOG, {"d": "not an object"}, 1)
    assert (state.error_codes, state.logs) == ((), ())
    assert apply_request(state, dm.NOTIFY, {"d": {}}, 1) == state


def test_registry_accept_request_creates_the_device() -> None:
    registry = DeviceRegistry()
    registry.accept_request(OTHER, dm.MANAGE, {"d": {"lifetime": 0}}, 5.0)
    record = registry.get(OTHER)
    assert record is not None
    assert record.dm.is_managed(5.0)


def test_answer_policy_precedence() -> None:
    policy = AnswerPolicy()
    assert policy.decide(DEV, dm.MANAGE, None) == Answer(200)
    assert policy.decide(DEV, dm.MANAGE, "lifetime bad") == Answer(400, "lifetime bad")

    policy.set(None, None, Answer(500))
    policy.set(None, dm.MANAGE, Answer(409))
    policy.set(DEV, None, Answer(None))
    policy.set(DEV, dm.LOCATION, Answer(404, "nope"))
    assert policy.decide(DEV, dm.LOCATION, None) == Answer(404, "nope")
    assert policy.decide(DEV, dm.MANAGE, None) == Answer(None)
    assert policy.decide(OTHER, dm.MANAGE, "bad") == Answer(409)
    assert policy.decide(OTHER, dm.LOCATION, "bad") == Answer(400, "bad")
    assert policy.decide(OTHER, dm.LOCATION, None) == Answer(500)

    policy.reset()
    assert policy.decide(DEV, dm.LOCATION, None) == Answer(200)


def test_notify_body() -> None:
    gw_client = "g:org:gw:g1"
    body = notify.notify_body(
        topic="iot-2/x", client_id=gw_client, message=notify.INVALID_DEVICE_ID, device=DEV, at=0.0
    )
    assert body == {
        "Request": "publish",
        "Time": "1970-01-01T00:00:00.000Z",
        "Topic": "iot-2/x",
        "Type": "modbus-meter",
        "Id": "boiler-1",
        "Client": gw_client,
        "RC": notify.DEFAULT_RC,
        "Message": "Device ID is not valid.",
    }
    bare = notify.notify_body(topic="t", client_id=gw_client, message="m", rc="E", at=0.0)
    assert "Type" not in bare
    assert bare["RC"] == "E"


@pytest.mark.parametrize(
    ("body", "rc", "d"),
    [({"rc": 202, "d": {"x": 1}}, 202, {"x": 1}), ({"rc": True}, None, None), (None, None, None)],
)
def test_dm_message_accessors(body: dict[str, object] | None, rc: int | None, d: object) -> None:
    message = DMMessage("up", DEV, "response", "t", b"", body, None, 0.0)
    assert message.rc == rc
    assert message.d == d
    assert DMExchange("platform", message, message).rc == rc
    assert DMExchange("platform", message, None).rc is None


def test_received_event_values() -> None:
    assert event("e", 0, {"ts": "x", "d": {"a": 1}}).values == {"a": 1}
    assert event("e", 0, {"a": 1}).values == {"a": 1}
    assert event("e", 0, None).values is None
    assert event("cmdResult", 0, {}).is_command_result
