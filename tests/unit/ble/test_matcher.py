"""Recognising configured devices in adverts."""

from __future__ import annotations

import pytest

from edged.adapters.ble.config import DeviceConfig
from edged.adapters.ble.matcher import Matcher

pytestmark = pytest.mark.ble

BTHOME = "0000fcd2-0000-1000-8000-00805f9b34fb"


def matcher() -> Matcher[str]:
    return Matcher(
        [
            (DeviceConfig(address="A4:C1:38:00:00:01"), "by-address"),
            (DeviceConfig(name="Kitchen"), "by-name"),
            (DeviceConfig(service_uuid="fcd2"), "by-uuid"),
        ]
    )


def test_address_beats_name_beats_uuid() -> None:
    m = matcher()
    assert m.match("A4:C1:38:00:00:01", "Kitchen", [BTHOME]) == "by-address"
    assert m.match("00:00:00:00:00:09", "Kitchen", [BTHOME]) == "by-name"
    assert m.match("00:00:00:00:00:0A", None, [BTHOME]) == "by-uuid"
    assert m.match("00:00:00:00:00:0B", "Hall", ["0000181a-0000-1000-8000-00805f9b34fb"]) is None


def test_an_address_matched_by_name_keeps_its_device() -> None:
    m = matcher()
    assert m.match("00:00:00:00:00:09", "Kitchen", []) == "by-name"
    assert m.match("00:00:00:00:00:09", None, []) == "by-name", "a scan response without the name"
