"""Adverts through the BlueZ mock into readings: decoding, matching, gating, presence, bad input."""

from __future__ import annotations

import logging

import pytest

from edged.model import DeviceState
from tests.integration.ble.bluez import BluezMock, uuid16
from tests.integration.ble.harness import (
    RecordingSink,
    controller,
    identity,
    run_controller,
)

pytestmark = [pytest.mark.ble, pytest.mark.integration]

BTHOME = uuid16(0xFCD2)
ENV_SENSING = uuid16(0x181A)
THERMO = "A4:C1:38:00:00:01"
BEACON = "C0:FF:EE:00:00:02"
TAG = "D0:00:00:00:00:03"


def bthome_v2(packet_id: int, temperature: float, humidity: float, battery: int) -> bytes:
    """A BTHome v2 service-data payload (unencrypted) as a sensor would send it."""
    return (
        bytes([0x40, 0x00, packet_id, 0x01, battery, 0x02])
        + round(temperature * 100).to_bytes(2, "little", signed=True)
        + bytes([0x03])
        + round(humidity * 100).to_bytes(2, "little")
    )


MANUFACTURER_LAYOUT = {
    "company_id": 0x0499,
    "prefix": "05",
    "fields": {
        "temperature": {"offset": 1, "type": "int16", "endian": "big", "scale": 0.005},
        "humidity": {"offset": 3, "type": "uint16", "endian": "big", "scale": 0.0025},
        "moving": {"offset": 5, "type": "uint8", "bit": 0},
    },
}


async def test_adverts_decode_end_to_end_for_every_source(bluez: BluezMock) -> None:
    thermo = bluez.add_device(THERMO, "ATC_000001")
    beacon = bluez.add_device(BEACON, "")
    tag = bluez.add_device(TAG, "EnvTag")
    bluez.advertise(thermo, service={BTHOME: bthome_v2(1, 21.5, 48.25, 93)}, rssi=-48)
    bluez.advertise(beacon, manufacturer={0x0499: bytes.fromhex("05 0f a0 4e 20 01")}, rssi=-71)
    bluez.advertise(tag, service={ENV_SENSING: bytes.fromhex("0a01 34")}, rssi=-80)
    runner = controller(
        {
            "thermo": {"address": THERMO, "bthome": True, "min_interval": 0},
            "beacon": {"address": BEACON, "manufacturer_data": [MANUFACTURER_LAYOUT]},
            "tag": {
                "name": "EnvTag",
                "rssi": False,
                "service_data": [
                    {
                        "uuid": "181a",
                        "fields": {
                            "temperature": {"type": "int16", "scale": 0.1},
                            "battery": {"offset": 2},
                        },
                    }
                ],
            },
        }
    )
    sink = RecordingSink()
    async with run_controller(runner, sink):
        await sink.wait_for(lambda: len({r.device for r in sink.readings}) == 3, "reading of each")
    assert sink.values_of(identity("thermo"))[0] == {
        "temperature": 21.5,
        "humidity": 48.25,
        "battery": 93,
        "rssi": -48,
    }
    assert sink.values_of(identity("beacon"))[0] == {
        "temperature": 20.0,
        "humidity": 50.0,
        "moving": True,
        "rssi": -71,
    }
    assert sink.values_of(identity("tag"))[0] == {"temperature": 26.6, "battery": 52}
    assert all(sink.state_of(identity(d)) == (DeviceState.ONLINE, "") for d in ("thermo", "beacon"))


async def test_report_on_change_and_min_interval(bluez: BluezMock) -> None:
    thermo = bluez.add_device(THERMO, "ATC_000001")
    bluez.advertise(thermo, service={BTHOME: bthome_v2(1, 20.0, 40.0, 90)}, rssi=-50)
    runner = controller({"thermo": {"address": THERMO, "bthome": True, "min_interval": "600ms"}})
    sink = RecordingSink()
    device = identity("thermo")
    async with run_controller(runner, sink):
        await sink.wait_for(lambda: sink.readings, "first reading")
        heard = runner.scanner.adverts
        await sink.wait_for(lambda: runner.scanner.adverts >= heard + 5, "repeated adverts")
        assert len(sink.readings) == 1, "identical re-adverts (and RSSI changes) are not news"

        bluez.advertise(thermo, service={BTHOME: bthome_v2(2, 20.5, 40.0, 90)}, rssi=-52)
        bluez.advertise(thermo, service={BTHOME: bthome_v2(3, 21.0, 40.0, 90)}, rssi=-53)
        await sink.wait_for(lambda: len(sink.readings) == 2, "the change")
    first, second = sink.readings
    assert second.timestamp - first.timestamp >= 0.55, "min_interval held the change back"
    assert sink.values_of(device)[1]["temperature"] == 21.0, "the latest value wins"


async def test_unknown_devices_are_ignored_and_unheard_ones_go_offline(bluez: BluezMock) -> None:
    stranger = bluez.add_device("11:22:33:44:55:66", "NotOurs")
    bluez.advertise(stranger, manufacturer={0x0499: bytes.fromhex("05 0f a0 4e 20 01")})
    runner = controller(
        {
            "ghost": {
                "address": BEACON,
                "timeout": "400ms",
                "manufacturer_data": [MANUFACTURER_LAYOUT],
            }
        }
    )
    sink = RecordingSink()
    async with run_controller(runner, sink):
        await sink.wait_for(
            lambda: (
                sink.state_of(identity("ghost"))
                == (DeviceState.OFFLINE, "not heard since start (0.4 s)")
            ),
            "ghost offline",
        )
        assert runner.unknown_adverts > 0
    assert sink.readings == []


async def test_device_goes_offline_when_silent_and_online_when_heard_again(
    bluez: BluezMock,
) -> None:
    beacon = bluez.add_device(BEACON, "")
    bluez.advertise(beacon, manufacturer={0x0499: bytes.fromhex("05 0f a0 4e 20 01")}, rssi=-66)
    runner = controller(
        {
            "beacon": {
                "address": BEACON,
                "timeout": "500ms",
                "manufacturer_data": [MANUFACTURER_LAYOUT],
            }
        },
        silence_timeout="1h",
    )
    sink = RecordingSink()
    device = identity("beacon")
    async with run_controller(runner, sink):
        await sink.wait_for(lambda: sink.state_of(device) == (DeviceState.ONLINE, ""), "online")
        bluez.control.SetAdvertising(beacon, False)
        await sink.wait_for(
            lambda: (
                sink.state_of(device)
                == (DeviceState.OFFLINE, "not heard for 0.5 s, last RSSI -66 dBm")
            ),
            "offline",
        )
        bluez.control.SetAdvertising(beacon, True)
        await sink.wait_for(
            lambda: sink.state_of(device) == (DeviceState.ONLINE, ""), "online again"
        )


async def test_match_by_name_and_by_service_uuid(bluez: BluezMock) -> None:
    named = bluez.add_device("E0:00:00:00:00:01", "Kitchen")
    by_uuid = bluez.add_device("E0:00:00:00:00:02", "")
    bluez.advertise(named, manufacturer={0x0059: b"\x07"})
    bluez.advertise(by_uuid, service={uuid16(0xFEAA): b"\x20\x00\x0b\xb8"})
    runner = controller(
        {
            "kitchen": {
                "name": "Kitchen",
                "manufacturer_data": [{"company_id": 0x59, "fields": {"mode": {}}}],
            },
            "eddystone": {
                "service_uuid": "feaa",
                "service_data": [
                    {
                        "uuid": "0xFEAA",
                        "prefix": "20",
                        "fields": {"mv": {"offset": 2, "type": "uint16", "endian": "big"}},
                    }
                ],
            },
        }
    )
    sink = RecordingSink()
    async with run_controller(runner, sink):
        await sink.wait_for(lambda: len(sink.readings) == 2, "both devices")
    assert sink.values_of(identity("kitchen"))[0]["mode"] == 7
    assert sink.values_of(identity("eddystone"))[0]["mv"] == 3000


async def test_malformed_adverts_mark_only_that_device_and_log_once(
    bluez: BluezMock, caplog: pytest.LogCaptureFixture
) -> None:
    good = bluez.add_device(THERMO, "ATC_000001")
    bad = bluez.add_device(BEACON, "")
    garbled = bluez.add_device(TAG, "BTHomeJunk")
    bluez.advertise(good, service={BTHOME: bthome_v2(1, 19.0, 50.0, 80)})
    bluez.advertise(bad, manufacturer={0x0499: bytes.fromhex("05 0f")})  # truncated
    bluez.advertise(garbled, service={BTHOME: b""})  # empty BTHome payload
    runner = controller(
        {
            "good": {"address": THERMO, "bthome": True},
            "bad": {"address": BEACON, "manufacturer_data": [MANUFACTURER_LAYOUT]},
            "garbled": {"address": TAG, "bthome": True},
        }
    )
    sink = RecordingSink()
    caplog.set_level(logging.INFO, logger="edged.adapters.ble")
    async with run_controller(runner, sink):
        await sink.wait_for(lambda: sink.values_of(identity("good")), "good reading")
        await sink.wait_for(
            lambda: (
                (sink.state_of(identity("bad")) or (None,))[0] is DeviceState.OFFLINE
                and (sink.state_of(identity("garbled")) or (None,))[0] is DeviceState.OFFLINE
            ),
            "bad devices marked",
        )
        heard = runner.scanner.adverts
        await sink.wait_for(lambda: runner.scanner.adverts > heard + 6, "more bad adverts")
        bluez.advertise(bad, manufacturer={0x0499: bytes.fromhex("05 0f a0 4e 20 00")})
        await sink.wait_for(lambda: sink.values_of(identity("bad")), "reading after the fix")
    bad_state = [detail for who, state, detail in sink.states if who == identity("bad")]
    assert "manufacturer data 0x0499: payload is 2 bytes, the layout needs 6" in bad_state[1]
    assert sink.state_of(identity("bad")) == (DeviceState.ONLINE, "")
    garbled_detail = sink.state_of(identity("garbled"))
    assert garbled_detail is not None
    assert "BTHome" in garbled_detail[1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("ble-sensor/bad" in m for m in warnings) == 1, warnings
    assert sum("ble-sensor/garbled" in m for m in warnings) == 1, warnings
    assert any(
        "recovered" in r.getMessage() and "ble-sensor/bad" in r.getMessage() for r in caplog.records
    )
