"""Device management: the emulator's requests to a gateway and its DM server's answers."""

from __future__ import annotations

import threading
import time

import orjson
import paho.mqtt.client as mqtt
import pytest

from edged.emulator import PlatformEmulator
from edged.model import DeviceIdentity
from tests.integration.emulator.helpers import BOILER, GATEWAY, PATH, PUMP, RawClient

pytestmark = pytest.mark.integration

REBOOT = "mgmt/initiate/device/reboot"


@pytest.fixture
def answering_gateway(gateway: RawClient) -> RawClient:
    """The gateway answering every platform request with rc 202 and ``d`` echoing the suffix."""
    gateway.subscribe("iotdm-1/type/+/id/+/#")

    def answer(client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
        levels = message.topic.split("/")  # iotdm-1/type/T/id/D/<suffix>
        path, suffix = "/".join(levels[1:5]), "/".join(levels[5:])
        if suffix == "response":
            return  # the DM server's answers to the gateway's own requests
        request = orjson.loads(message.payload)
        body = {"rc": 202, "reqId": request["reqId"], "d": {"asked": suffix}}
        client.publish(f"iotdevice-1/{path}/response", orjson.dumps(body), 1)

    gateway.client.on_message = answer
    return gateway


def test_dm_request_returns_the_gateways_answer(
    emu: PlatformEmulator, answering_gateway: RawClient
) -> None:
    answer = emu.dm_request(BOILER, REBOOT)

    assert answer["rc"] == 202
    assert answer["d"] == {"asked": REBOOT}
    [exchange] = emu.dm_exchanges
    assert exchange.initiator == "platform"
    assert exchange.rc == 202
    assert exchange.request.req_id == answer["reqId"]
    assert exchange.request.body == {"reqId": answer["reqId"]}  # no d when none given
    second = emu.dm_request(BOILER, "observe", {"fields": [{"field": "mgmt.firmware"}]})
    assert second["reqId"] != answer["reqId"]
    assert emu.violations == []


def test_dm_request_times_out_without_an_answer(emu: PlatformEmulator) -> None:
    with pytest.raises(TimeoutError, match="answer to mgmt/initiate/device/reboot"):
        emu.dm_request(BOILER, REBOOT, timeout=0.3)
    [exchange] = emu.dm_exchanges
    assert exchange.response is None


def _manage(
    gateway: RawClient, device: DeviceIdentity, req_id: str, **d: object
) -> dict[str, object]:
    """Send a manage request as the gateway and return the platform's answer."""
    gateway.publish(f"iotdevice-1/{PATH[device]}/mgmt/manage", {"reqId": req_id, "d": d})
    message = gateway.next_message()
    assert message.topic == f"iotdm-1/{PATH[device]}/response"
    body: dict[str, object] = orjson.loads(message.payload)
    return body


def test_dm_server_answers_and_tracks_managed_state(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.subscribe("iotdm-1/type/+/id/+/response")
    before = time.time()

    answer = _manage(
        gateway,
        GATEWAY,
        "m1",
        lifetime=3600,
        supports={"deviceActions": True},
        deviceInfo={"model": "x1"},
    )

    assert answer == {"rc": 200, "reqId": "m1"}
    state = emu.devices[GATEWAY].dm
    assert emu.is_managed(GATEWAY)
    assert state.lifetime == 3600
    assert state.expires_at is not None
    assert before + 3600 <= state.expires_at <= time.time() + 3600
    assert state.supports == {"deviceActions": True}
    assert state.device_info == {"model": "x1"}

    requests = [
        ("device/update/location", {"reqId": "l1", "d": {"latitude": 48.1, "longitude": 11.6}}),
        ("add/diag/errorCodes", {"reqId": "e1", "d": {"errorCode": 7}}),
        ("add/diag/log", {"reqId": "g1", "d": {"message": "boot", "severity": 0}}),
        ("notify", {"reqId": "n1", "d": {"fields": [{"field": "location", "value": {}}]}}),
    ]
    for suffix, body in requests:
        gateway.publish(f"iotdevice-1/{PATH[GATEWAY]}/{suffix}", body)
        assert orjson.loads(gateway.next_message().payload) == {"rc": 200, "reqId": body["reqId"]}
    state = emu.devices[GATEWAY].dm
    assert state.location == {"latitude": 48.1, "longitude": 11.6}
    assert state.error_codes == (7,)
    assert state.logs == ({"message": "boot", "severity": 0},)

    gateway.publish(f"iotdevice-1/{PATH[GATEWAY]}/mgmt/unmanage", {"reqId": "u1"})
    assert orjson.loads(gateway.next_message().payload)["rc"] == 200
    assert not emu.is_managed(GATEWAY)
    assert [e.request.suffix for e in emu.dm_exchanges] == [
        "mgmt/manage",
        *(suffix for suffix, _ in requests),
        "mgmt/unmanage",
    ]
    assert all(e.initiator == "gateway" and e.rc == 200 for e in emu.dm_exchanges)
    assert emu.violations == []


def test_dm_answers_can_be_forced_per_device_and_suffix(
    emu: PlatformEmulator, gateway: RawClient
) -> None:
    gateway.subscribe("iotdm-1/type/+/id/+/response")
    emu.set_dm_answer("mgmt/manage", device=BOILER, rc=404, message="device not registered")
    emu.set_dm_answer(device=PUMP, rc=None)

    assert _manage(gateway, BOILER, "b1") == {
        "rc": 404,
        "reqId": "b1",
        "message": "device not registered",
    }
    assert not emu.is_managed(BOILER)
    assert _manage(gateway, GATEWAY, "g1")["rc"] == 200  # other devices are unaffected

    gateway.publish(f"iotdevice-1/{PATH[PUMP]}/mgmt/manage", {"reqId": "p1"})
    assert gateway.nothing_within(0.3)
    unanswered = emu.dm_exchanges[-1]
    assert unanswered.request.device == PUMP
    assert unanswered.response is None

    emu.reset_dm_answers()
    assert _manage(gateway, BOILER, "b2")["rc"] == 200
    assert emu.is_managed(BOILER)


def test_malformed_dm_requests_get_400(emu: PlatformEmulator, gateway: RawClient) -> None:
    gateway.subscribe("iotdm-1/type/+/id/+/response")

    answer = _manage(gateway, BOILER, "bad", lifetime="forever")

    assert answer["rc"] == 400
    assert "lifetime" in str(answer["message"])
    assert not emu.is_managed(BOILER)


def test_dm_server_answers_on_the_network_thread_while_a_request_waits(
    emu: PlatformEmulator, answering_gateway: RawClient
) -> None:
    """A gateway request arriving while a test thread waits in dm_request() is still answered."""
    results: list[dict[str, object]] = []
    thread = threading.Thread(target=lambda: results.append(emu.dm_request(PUMP, REBOOT)))
    thread.start()
    answering_gateway.publish(f"iotdevice-1/{PATH[PUMP]}/mgmt/manage", {"reqId": "x"})
    thread.join(10)
    emu.wait_for(lambda: emu.is_managed(PUMP), what="pump managed")
    assert results
    assert results[0]["rc"] == 202
