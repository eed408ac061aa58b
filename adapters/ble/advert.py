"""What one advert says, and turning it into a device's values. Pure code, no bleak.

:class:`Advert` is the scanner's library-neutral view of an advertisement;
:class:`AdvertDecoder` applies one device's configured sources to it (BTHome, manufacturer data
layouts, service data layouts).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edged.adapters.ble.config import DeviceConfig
from edged.adapters.ble.layout import Layout, LayoutError
from edged.model import JSONValue


@dataclass(frozen=True, slots=True)
class Advert:
    """One advertisement as heard: who sent it, how loud, and its data sections."""

    address: str  # upper case, colons
    name: str | None
    rssi: int | None
    manufacturer_data: Mapping[int, bytes]
    service_data: Mapping[str, bytes]  # 128-bit lower-case UUID -> data
    service_uuids: Sequence[str]
    time: float  # time.monotonic() when heard


class DecodeError(ValueError):
    """A configured data section is present in the advert but cannot be decoded."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(f"{source}: {message}")
        self.source = source
        self.message = message


@dataclass(frozen=True, slots=True)
class _Section:
    key: Any  # company id (int) or service UUID (str)
    label: str
    prefix: bytes | None
    layout: Layout


@dataclass(frozen=True, slots=True)
class Decoded:
    """The values one advert yielded; ``event`` is set when BTHome reported a fresh event."""

    values: dict[str, JSONValue]
    event: bool = False


class AdvertDecoder:
    """Applies one device's advert sources; keep one per device (BTHome keeps state)."""

    def __init__(self, config: DeviceConfig) -> None:
        self._manufacturer = tuple(
            _Section(
                m.company_id, f"manufacturer data 0x{m.company_id:04x}", m.prefix, Layout(m.fields)
            )
            for m in config.manufacturer_data
        )
        self._service = tuple(
            _Section(s.uuid, f"service data {s.uuid}", s.prefix, Layout(s.fields))
            for s in config.service_data
        )
        self._bthome = None
        self._bthome_uuids: tuple[str, ...] = ()
        if config.bthome is not None:
            from edged.adapters.ble.bthome import BTHOME_UUIDS, BTHomeDecoder  # only if used

            key = config.bthome.bindkey
            self._bthome = BTHomeDecoder(bytes.fromhex(key.get_secret_value()) if key else None)
            self._bthome_uuids = tuple(sorted(BTHOME_UUIDS))
        self._last_raw: tuple[bytes | None, ...] | None = None
        self._last: Decoded | tuple[str, str] | None = None  # values, or (source, message)

    @property
    def has_sources(self) -> bool:
        """Whether any advert data is configured (else the device reports presence only)."""
        return bool(self._manufacturer or self._service or self._bthome)

    def decode(self, advert: Advert) -> Decoded | None:
        """The values in ``advert``, or ``None`` when it holds none of the configured sections.

        Raises :class:`DecodeError` naming the section that is present but malformed. Devices
        repeat the same advert many times (BlueZ reports each RSSI change): when the configured
        sections hold the same bytes as last time, the last outcome is reused.
        """
        raw = (
            *(advert.manufacturer_data.get(s.key) for s in self._manufacturer),
            *(advert.service_data.get(s.key) for s in self._service),
            *(advert.service_data.get(uuid) for uuid in self._bthome_uuids),
        )
        if raw == self._last_raw:
            last = self._last
            if isinstance(last, tuple):
                raise DecodeError(*last)  # a new exception: re-raising one grows its traceback
            return Decoded(last.values) if last is not None else None  # an event fires once
        self._last_raw = raw
        try:
            decoded = self._decode(advert)
        except DecodeError as exc:
            self._last = (exc.source, exc.message)
            raise
        self._last = decoded
        return decoded

    def _decode(self, advert: Advert) -> Decoded | None:
        values: dict[str, JSONValue] = {}
        found = False
        for section in self._manufacturer:
            found |= self._apply(section, advert.manufacturer_data.get(section.key), values)
        for section in self._service:
            found |= self._apply(section, advert.service_data.get(section.key), values)
        event = False
        if self._bthome is not None and self._bthome.carries_bthome(advert.service_data):
            from edged.adapters.ble.bthome import BTHomeError

            try:
                event = self._bthome.decode(advert, values)
            except BTHomeError as exc:
                raise DecodeError("BTHome", str(exc)) from exc
            found = True
        return Decoded(values, event) if found else None

    @staticmethod
    def _apply(section: _Section, data: bytes | None, values: dict[str, JSONValue]) -> bool:
        if data is None or (section.prefix is not None and not data.startswith(section.prefix)):
            return False
        try:
            section.layout.decode(data, values)
        except LayoutError as exc:
            raise DecodeError(section.label, f"{exc}; data {data.hex()}") from exc
        return True
