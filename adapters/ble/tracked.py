"""One configured BLE device as its controller sees it: decoder, report gate, presence, values."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from edged.adapters.base import DeviceSpec
from edged.adapters.ble.advert import AdvertDecoder
from edged.adapters.ble.config import DeviceConfig
from edged.adapters.ble.gate import ReportGate
from edged.model import DeviceIdentity, DeviceState, JSONValue
from edged.problems import ProblemLog

if TYPE_CHECKING:
    from edged.adapters.ble.gatt import GattLink

log = logging.getLogger("edged.adapters.ble")


class Tracked:
    """Mutable bookkeeping for one device; owned by its controller's event loop."""

    def __init__(self, spec: DeviceSpec[DeviceConfig]) -> None:
        self.spec = spec
        self.identity: DeviceIdentity = spec.identity
        self.config: DeviceConfig = spec.section
        self.decoder = AdvertDecoder(self.config)
        self.gate = ReportGate(
            on_change=self.config.report == "change",
            min_interval=self.config.min_interval,
            max_interval=self.config.max_interval,
            ignore=("rssi",),
        )
        self.values: dict[str, JSONValue] = {}
        """Latest value of every field, from adverts and the GATT link."""
        self.rssi: int | None = None
        self.last_seen: float | None = None
        self.ble_device: Any = None
        """bleak's BLEDevice from the latest advert (what a connection needs)."""
        self.state: tuple[DeviceState, str] | None = None
        self.problems = ProblemLog(log, str(self.identity), quiet=0.0)
        self.link: GattLink | None = None

    def snapshot(self) -> dict[str, JSONValue]:
        """The values a reading would carry now."""
        values = dict(self.values)
        if self.config.rssi and self.rssi is not None:
            values["rssi"] = self.rssi
        return values
