"""Config of the BLE adapter: which Bluetooth LE devices to hear or connect to, and how to decode.

Pydantic models only. Importing this module must not import bleak or any Bluetooth library:
``edged check-config`` validates BLE sections on machines without them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, model_validator

from edged.adapters.base import Loc
from edged.config.types import Duration, FiniteFloat, PositiveDuration, StrictModel, TopicName
from edged.config.yamlsource import format_loc

BASE_UUID_SUFFIX = "-0000-1000-8000-00805f9b34fb"
_MAC_RE = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}")
_CONTROLLER_RE = re.compile(r"hci[0-9]{1,3}")
_FIELD_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_UUID128_RE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

INTEGER_TYPES = {
    "int8": (1, True),
    "uint8": (1, False),
    "int16": (2, True),
    "uint16": (2, False),
    "int24": (3, True),
    "uint24": (3, False),
    "int32": (4, True),
    "uint32": (4, False),
    "int64": (8, True),
    "uint64": (8, False),
}
"""Integer field types: size in bytes and signedness."""
FLOAT_TYPES = {"float16": 2, "float32": 4, "float64": 8}
"""IEEE 754 field types and their size in bytes."""
BYTES_TYPES = ("string", "hex")
"""Variable-length field types; they need ``length``."""
FieldType = Literal[
    "int8", "uint8", "int16", "uint16", "int24", "uint24", "int32", "uint32", "int64", "uint64",
    "float16", "float32", "float64", "bool", "string", "hex",
]  # fmt: skip


def normalize_uuid(value: Any) -> str:
    """A service or characteristic UUID in BlueZ's form: 128-bit, lower case.

    Accepts the 16- or 32-bit SIG short forms (``181a``, ``0x181A``, ``0000fcd2``) and full UUIDs.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        value = f"{value:04x}"
    if not isinstance(value, str):
        raise ValueError("expected a UUID like 181a or 0000181a-0000-1000-8000-00805f9b34fb")
    text = value.strip().lower().removeprefix("0x")
    if re.fullmatch(r"[0-9a-f]{4}|[0-9a-f]{8}", text):
        return text.rjust(8, "0") + BASE_UUID_SUFFIX
    if _UUID128_RE.fullmatch(text):
        return text
    raise ValueError("expected a UUID like 181a or 0000181a-0000-1000-8000-00805f9b34fb")


def _address(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    text = value.strip().upper().replace("-", ":")
    if not _MAC_RE.fullmatch(text):
        raise ValueError("expected a Bluetooth address like A4:C1:38:12:34:56")
    return text


def _controller(value: str) -> str:
    if not _CONTROLLER_RE.fullmatch(value):
        raise ValueError("expected a Bluetooth controller name like hci0")
    return value


def _field_name(value: str) -> str:
    if not _FIELD_NAME_RE.fullmatch(value):
        raise ValueError("field names are 1-64 characters of A-Z a-z 0-9 _ . -")
    return value


def _hex_bytes(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return bytes.fromhex(value.replace(":", " "))
        except ValueError:
            raise ValueError("expected hex bytes like 0a1b2c") from None
    return value


BleUuid = Annotated[str, BeforeValidator(normalize_uuid)]
"""A GATT/service UUID, normalised to 128-bit lower case."""
BleAddress = Annotated[str, BeforeValidator(_address)]
"""A Bluetooth device address, normalised to upper case with colons."""
ControllerName = Annotated[str, AfterValidator(_controller)]
"""A Bluetooth controller (BlueZ adapter) name such as ``hci0``."""
FieldName = Annotated[str, AfterValidator(_field_name)]
"""The name a decoded value gets in the reading."""
HexBytes = Annotated[bytes, BeforeValidator(_hex_bytes)]
"""Bytes written in the config as hex (``"0a1b"``, ``"0a:1b"``, ``"0a 1b"``)."""


class Encoding(StrictModel):
    """How a value sits in bytes: type, byte order, and the linear scaling to engineering units.

    Decoding computes ``raw * scale + add``; encoding a command value reverses it.
    """

    type: FieldType = "uint8"
    endian: Literal["little", "big"] = "little"
    scale: FiniteFloat = 1.0
    add: FiniteFloat = 0.0
    length: int | None = Field(default=None, ge=1, le=512)  # for string and hex

    @model_validator(mode="after")
    def _consistent(self) -> Encoding:
        if self.type in BYTES_TYPES:
            if self.length is None:
                raise ValueError(f"type {self.type} needs length (bytes)")
            if self.scale != 1.0 or self.add != 0.0:
                raise ValueError(f"scale and add do not apply to type {self.type}")
        elif self.length is not None:
            raise ValueError(f"length applies only to string and hex, not {self.type}")
        if self.scale == 0:
            raise ValueError("scale must not be zero")
        return self

    @property
    def size(self) -> int:
        """Bytes the value occupies."""
        if self.type in INTEGER_TYPES:
            return INTEGER_TYPES[self.type][0]
        if self.type in FLOAT_TYPES:
            return FLOAT_TYPES[self.type]
        if self.type == "bool":
            return 1
        assert self.length is not None
        return self.length


class FieldSpec(Encoding):
    """One value in a payload: where it starts, how it is encoded, optional bit and rounding."""

    offset: int = Field(default=0, ge=0, le=511)
    bit: int | None = Field(default=None, ge=0, le=63)  # the value is this bit of the integer
    decimals: int | None = Field(default=None, ge=0, le=12)

    @model_validator(mode="after")
    def _bit_fits(self) -> FieldSpec:
        if self.bit is not None:
            if self.type not in INTEGER_TYPES:
                raise ValueError("bit applies only to integer types")
            if self.bit >= 8 * self.size:
                raise ValueError(f"bit {self.bit} is outside a {self.type}")
        return self


Fields = Annotated[dict[FieldName, FieldSpec], Field(min_length=1)]


class ManufacturerDataConfig(StrictModel):
    """Values decoded from the manufacturer-specific data of one company id."""

    company_id: int = Field(ge=0, le=0xFFFF)
    prefix: HexBytes | None = None  # decode only payloads starting with these bytes
    fields: Fields


class ServiceDataConfig(StrictModel):
    """Values decoded from the service data of one service UUID."""

    uuid: BleUuid
    prefix: HexBytes | None = None
    fields: Fields


def _bindkey(value: SecretStr | None) -> SecretStr | None:
    if value is not None and not re.fullmatch(r"[0-9a-fA-F]{32}", value.get_secret_value()):
        raise ValueError("a BTHome bindkey is 32 hex characters")
    return value


def _bthome_shorthand(value: Any) -> Any:
    if value is True:
        return {}
    if value is False:
        return None
    return value


class BTHomeConfig(StrictModel):
    """Decode BTHome (v1 and v2) adverts; ``bindkey`` for encrypted ones (kept out of logs)."""

    bindkey: Annotated[SecretStr | None, AfterValidator(_bindkey)] = None


class ReconnectConfig(StrictModel):
    """Backoff between connection attempts after a failure or a disconnect."""

    initial: PositiveDuration = 1.0
    max: PositiveDuration = 300.0

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.initial > self.max:
            raise ValueError("initial must not exceed max")
        return self


class CharacteristicConfig(StrictModel):
    """A characteristic whose value is read on every poll and/or delivered by notifications."""

    uuid: BleUuid
    read: bool = True
    notify: bool = False
    fields: Fields

    @model_validator(mode="after")
    def _used(self) -> CharacteristicConfig:
        if not (self.read or self.notify):
            raise ValueError("set read, notify or both")
        return self


class GattCommandConfig(Encoding):
    """A platform command that writes one characteristic.

    Without ``payload`` the command carries a value (``{"value": 21.5}`` or a bare number or
    string) encoded by ``type``/``endian``/``scale``/``add``; with ``payload`` it writes those
    fixed bytes. ``response`` selects write-with-response (acknowledged by the device).
    """

    uuid: BleUuid
    payload: HexBytes | None = None
    response: bool = True
    min: FiniteFloat | None = None
    max: FiniteFloat | None = None

    @model_validator(mode="after")
    def _range(self) -> GattCommandConfig:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min must not exceed max")
        return self


class GattConfig(StrictModel):
    """Connect to the device: poll characteristics, subscribe to notifications, write commands."""

    poll: PositiveDuration = 30.0
    characteristics: list[CharacteristicConfig] = Field(default_factory=list)
    commands: dict[TopicName, GattCommandConfig] = Field(default_factory=dict)
    connect_timeout: PositiveDuration = 30.0
    io_timeout: PositiveDuration = 10.0
    reconnect: ReconnectConfig = ReconnectConfig()

    @model_validator(mode="after")
    def _has_work(self) -> GattConfig:
        if not self.characteristics and not self.commands:
            raise ValueError("give characteristics to read, commands to write, or both")
        return self


class DeviceConfig(StrictModel):
    """The ``ble:`` section of a device.

    A device is matched by ``address`` or, failing that, by advertised ``name`` or
    ``service_uuid`` (address beats name beats UUID). Readings come from its adverts (BTHome,
    manufacturer data, service data) and, with ``gatt``, from a connection.
    """

    adapter: ControllerName = "hci0"
    address: BleAddress | None = None
    name: str | None = Field(default=None, min_length=1, max_length=248)
    service_uuid: BleUuid | None = None

    timeout: PositiveDuration = 300.0  # offline when not heard from for this long
    min_interval: Duration = 5.0  # at most one reading per this interval
    max_interval: Duration = 0.0  # also publish unchanged values this often (0: only changes)
    report: Literal["change", "every"] = "change"
    rssi: bool = True  # put the signal strength in readings (never counts as a change)

    bthome: Annotated[BTHomeConfig | None, BeforeValidator(_bthome_shorthand)] = None
    manufacturer_data: list[ManufacturerDataConfig] = Field(default_factory=list)
    service_data: list[ServiceDataConfig] = Field(default_factory=list)
    gatt: GattConfig | None = None

    @model_validator(mode="after")
    def _identified(self) -> DeviceConfig:
        if self.address is None and self.name is None and self.service_uuid is None:
            raise ValueError("give address, name or service_uuid to recognise the device")
        if self.gatt is not None and self.address is None and self.name is None:
            raise ValueError("a gatt device needs address or name (a service UUID is not unique)")
        if 0 < self.max_interval < self.min_interval:
            raise ValueError("max_interval must not be shorter than min_interval")
        return self

    @property
    def match_key(self) -> tuple[str, str]:
        """How this device is recognised: its most specific identifier."""
        if self.address is not None:
            return ("address", self.address)
        if self.name is not None:
            return ("name", self.name)
        assert self.service_uuid is not None
        return ("service_uuid", self.service_uuid)


class ControllerSettings(StrictModel):
    """Per-controller behaviour: connection limit and the self-healing thresholds."""

    max_connections: int = Field(default=3, ge=1, le=32)
    silence_timeout: PositiveDuration = 120.0  # no adverts at all for this long: wedged
    connect_failures: int = Field(default=6, ge=1, le=1000)  # consecutive failures: wedged
    recovery_wait: PositiveDuration = 30.0  # time each recovery step gets before the next
    power_cycle: bool = True  # may power the controller off and on over D-Bus


class Settings(ControllerSettings):
    """The ``adapters: {ble: ...}`` block: defaults for every controller, and overrides per name."""

    controllers: dict[ControllerName, ControllerSettings] = Field(default_factory=dict)

    def for_controller(self, name: str) -> ControllerSettings:
        """Settings of controller ``name``: its override's explicit keys over the defaults."""
        defaults = {key: getattr(self, key) for key in ControllerSettings.model_fields}
        override = self.controllers.get(name)
        if override is not None:
            defaults.update({key: getattr(override, key) for key in override.model_fields_set})
        return ControllerSettings(**defaults)


def cross_check(
    devices: Sequence[tuple[Loc, DeviceConfig]], settings: Settings
) -> Iterable[tuple[Loc, str]]:
    """Two devices on one controller must not be recognised by the same address, name or UUID."""
    seen: dict[tuple[str, str, str], Loc] = {}
    for loc, device in devices:
        kind, value = device.match_key
        key = (device.adapter, kind, value)
        if key in seen:
            yield (
                (*loc, "ble", kind),
                f"{format_loc(seen[key])} on {device.adapter} already has {kind} {value}",
            )
        else:
            seen[key] = loc
