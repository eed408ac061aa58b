"""The benchmark's fleet of BLE sensors: half BTHome v2 thermometers, half Ruuvi-style beacons."""

from __future__ import annotations

from typing import Any

from edged.adapters.base import DeviceSpec
from edged.adapters.ble.config import DeviceConfig, Settings
from edged.model import DeviceIdentity

FLEET_ADAPTER = "hci0"
BTHOME_UUID = "0000fcd2-0000-1000-8000-00805f9b34fb"
RUUVI = 0x0499
RUUVI_FIELDS = {
    "temperature": {"offset": 1, "type": "int16", "endian": "big", "scale": 0.005},
    "humidity": {"offset": 3, "type": "uint16", "endian": "big", "scale": 0.0025},
    "pressure": {"offset": 5, "type": "uint16", "endian": "big", "add": 50000},
    "movements": {"offset": 15, "type": "uint8"},
}


def _address(index: int) -> str:
    return f"B0:00:00:00:{index >> 8:02X}:{index & 0xFF:02X}"


def _is_bthome(index: int) -> bool:
    return index % 2 == 0


def fleet_payloads(count: int) -> list[tuple[str, str, dict[int, bytes], dict[str, bytes]]]:
    """(address, name, manufacturer data, service data) of each device."""
    fleet: list[tuple[str, str, dict[int, bytes], dict[str, bytes]]] = []
    for i in range(count):
        if _is_bthome(i):
            temperature = (2000 + i).to_bytes(2, "little")
            data = bytes([0x40, 0x00, i % 256, 0x01, 0x5D, 0x02, *temperature, 0x03, 0x10, 0x19])
            fleet.append((_address(i), f"BTH-{i:03d}", {}, {BTHOME_UUID: data}))
        else:
            ruuvi = bytes([0x05, 0x0F, 0xA0, 0x4E, 0x20, 0xC3, 0x50]) + bytes(17)
            fleet.append((_address(i), "", {RUUVI: ruuvi}, {}))
    return fleet


def _section(index: int, every: bool) -> dict[str, Any]:
    common: dict[str, Any] = {"address": _address(index)}
    if every:
        common.update(min_interval=0, report="every")
    if _is_bthome(index):
        return {**common, "bthome": True}
    return {**common, "manufacturer_data": [{"company_id": RUUVI, "fields": RUUVI_FIELDS}]}


def fleet_configs(
    count: int, *, every: bool = True
) -> tuple[list[DeviceSpec[DeviceConfig]], Settings]:
    """Device specs for the fleet (``every``: each advert reported, else the defaults)."""
    specs = [
        DeviceSpec(
            DeviceIdentity("bench-sensor", f"s{i:03d}"),
            DeviceConfig.model_validate(_section(i, every)),
            "reading",
            ("devices", i),
        )
        for i in range(count)
    ]
    return specs, Settings(silence_timeout=3600.0)


_HEAD = """\
platform:
  org: bench1
  gateway: {type: gw, id: bench}
devices:
"""
_SIMULATED = """\
  - {id: sim-%d, type: sim, adapter: simulated, simulated: {interval: 1s, values: {t: {}}}}
"""
_ADVERT = """\
  - id: tag-%d
    type: tag
    adapter: ble
    ble:
      address: B0:00:00:00:00:%02X
      manufacturer_data: [{company_id: 0x0499, fields: {t: {offset: 1, type: int16}}}]
"""
_BTHOME_GATT = """\
  - {id: bth, type: bthome, adapter: ble, ble: {address: "B0:00:00:00:00:00", bthome: true}}
  - id: valve
    type: valve
    adapter: ble
    ble:
      address: B0:00:00:00:00:FE
      gatt: {commands: {open: {uuid: 2a00, payload: "01"}}}
"""


def memory_configs() -> list[tuple[str, str]]:
    """(label, config text): without BLE, advert-only BLE, and BLE with BTHome and GATT."""
    simulated = "".join(_SIMULATED % i for i in range(10))
    adverts = "".join(_ADVERT % (i, 2 * i + 1) for i in range(10))
    return [
        ("10 simulated devices, no BLE", _HEAD + simulated),
        ("+ 10 BLE advert devices (layouts)", _HEAD + simulated + adverts),
        (
            "+ 10 BLE layouts, a BTHome and a GATT device",
            _HEAD + simulated + adverts + _BTHOME_GATT,
        ),
    ]
