"""BTHome adverts decoded by the maintained ``bthome-ble`` parser (Debian: python3-bthome-ble).

The library expects Home Assistant's ``BluetoothServiceInfoBleak``; it only reads plain attributes
from it, so :class:`_ServiceInfo` carries exactly those (constructing the real class differs
between habluetooth versions). A canary test runs the installed library unmocked.

The library keeps state per device (packet-id de-duplication, the encryption counter) and returns
every value it knows, not only this advert's. It logs a bad payload at ERROR on every advert, so
its records are captured during a call: errors (and warnings, when no values resulted) become
:class:`BTHomeError`, which the adapter logs once per streak; other warnings (objects out of
order, say) go to DEBUG.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from edged.model import JSONValue

if TYPE_CHECKING:
    from edged.adapters.ble.advert import Advert

BTHOME_UUIDS = frozenset(
    {
        "0000fcd2-0000-1000-8000-00805f9b34fb",  # v2
        "0000181c-0000-1000-8000-00805f9b34fb",  # v1
        "0000181e-0000-1000-8000-00805f9b34fb",  # v1, encrypted
    }
)
_SKIPPED_KEYS = frozenset({"packet_id", "signal_strength"})  # bookkeeping, not measurements


class BTHomeError(ValueError):
    """The advert carries BTHome data that could not be decoded."""


@dataclass(slots=True)
class _ServiceInfo:
    name: str
    address: str
    rssi: int
    manufacturer_data: Mapping[int, bytes]
    service_data: Mapping[str, bytes]
    service_uuids: Sequence[str]
    time: float
    source: str = "local"
    raw: bytes | None = None
    connectable: bool = True
    tx_power: int | None = None


class _Capture(logging.Filter):
    """Swallows the parser's records while a decode runs and keeps the serious ones."""

    def __init__(self) -> None:
        super().__init__()
        self.active = False
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.active:
            return True
        if record.levelno >= logging.ERROR:
            self.errors.append(record.getMessage())
        elif record.levelno >= logging.WARNING:
            self.warnings.append(record.getMessage())
        return False


log = logging.getLogger("edged.adapters.ble")
_capture = _Capture()
logging.getLogger("bthome_ble.parser").addFilter(_capture)


def _json(value: Any) -> JSONValue:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def _name(device_key: Any) -> str:
    key = str(device_key.key)
    return f"{key}_{device_key.device_id}" if device_key.device_id else key


class BTHomeDecoder:
    """Decodes one device's BTHome adverts; keep one per device (the parser has state)."""

    def __init__(self, bindkey: bytes | None = None) -> None:
        from bthome_ble import BTHomeBluetoothDeviceData

        self._parser = BTHomeBluetoothDeviceData(bindkey=bindkey)

    @staticmethod
    def carries_bthome(service_data: Mapping[str, bytes]) -> bool:
        """Whether an advert has BTHome service data at all."""
        return not BTHOME_UUIDS.isdisjoint(service_data)

    def decode(self, advert: Advert, values: dict[str, JSONValue]) -> bool:
        """Add the measured values to ``values``; return whether they include a fresh event.

        Raises :class:`BTHomeError` when the BTHome data cannot be decoded (bad version, failed
        decryption, encrypted without a bindkey, empty or garbled payload, no known objects).
        """
        info = _ServiceInfo(
            name=advert.name or "",
            address=advert.address,
            rssi=advert.rssi if advert.rssi is not None else -127,
            manufacturer_data=advert.manufacturer_data,
            service_data=advert.service_data,
            service_uuids=advert.service_uuids,
            time=advert.time,
        )
        _capture.active = True
        _capture.errors.clear()
        _capture.warnings.clear()
        try:
            update = self._parser.update(info)  # type: ignore[arg-type]  # duck-typed on purpose
        except Exception as exc:
            raise BTHomeError(
                f"BTHome payload could not be parsed ({type(exc).__name__}: {exc})"
            ) from exc
        finally:
            _capture.active = False
        if _capture.errors:
            raise BTHomeError(f"BTHome payload rejected: {_capture.errors[0]}")
        found = 0
        for device_key, sensor in update.entity_values.items():
            if device_key.key not in _SKIPPED_KEYS:
                values[_name(device_key)] = _json(sensor.native_value)
                found += 1
        for device_key, binary in update.binary_entity_values.items():
            values[_name(device_key)] = _json(binary.native_value)
            found += 1
        for device_key, event in update.events.items():
            values[_name(device_key)] = _json(event.event_type)
            found += 1
        if not found:
            scheme = getattr(getattr(self._parser, "encryption_scheme", None), "value", "none")
            if scheme != "none" and self._parser.bindkey is None:
                raise BTHomeError("BTHome advert is encrypted: configure bthome.bindkey")
            if _capture.warnings:  # e.g. a failed decryption: say why there are no values
                raise BTHomeError(f"BTHome payload rejected: {_capture.warnings[0]}")
            raise BTHomeError("BTHome advert carried no values the parser understands")
        if _capture.warnings and log.isEnabledFor(logging.DEBUG):
            log.debug("%s: BTHome parser notes: %s", advert.address, "; ".join(_capture.warnings))
        return bool(update.events)
