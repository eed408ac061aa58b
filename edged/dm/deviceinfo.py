"""The ``deviceInfo`` sent with each manage request (PROTOCOL.md 4.5).

For the gateway: what the system tells about the machine, the daemon's version as
``fwVersion``, ``deviceClass`` "gateway", then the configured ``device_info`` values, which
always win. For an attached device: what its adapter reported, if anything, then the
configured values. Only the eight ``deviceInfo`` keys ever appear, each a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from edged.config.management import DeviceInfoConfig

DEVICE_INFO_KEYS = (
    "serialNumber",
    "manufacturer",
    "model",
    "deviceClass",
    "description",
    "fwVersion",
    "hwVersion",
    "descriptiveLocation",
)
"""The ``deviceInfo`` fields of iotdm-1, in the order the protocol lists them."""

_LONG_KEYS = frozenset({"description", "descriptiveLocation"})
MAX_VALUE = 256
"""Characters kept of a value (1024 for ``description`` and ``descriptiveLocation``)."""
MAX_LONG_VALUE = 1024

_READ_LIMIT = 64 * 1024  # /proc/cpuinfo of a many-core machine stays well below it

# Values firmware writes when nobody filled the DMI table in; they identify nothing.
_PLACEHOLDERS = frozenset(
    {
        "to be filled by o.e.m.",
        "default string",
        "system serial number",
        "system product name",
        "system manufacturer",
        "not specified",
        "not applicable",
        "none",
        "0123456789",
    }
)

RASPBERRY_PI_MAKER = "Raspberry Pi Ltd"


def _limit(key: str) -> int:
    return MAX_LONG_VALUE if key in _LONG_KEYS else MAX_VALUE


def _read(root: str, relative: str) -> str | None:
    """A small system file's text, or None when it is absent or unreadable (often root-only)."""
    try:
        with Path(root, relative).open("rb") as file:
            raw = file.read(_READ_LIMIT)
    except (OSError, ValueError):
        return None
    return raw.decode("utf-8", "replace")


def _clean(text: str | None) -> str | None:
    """``text`` without NULs and surrounding whitespace, bounded; None if it says nothing."""
    if text is None:
        return None
    value = text.replace("\0", "").strip()[:MAX_VALUE]
    if not value or value.casefold() in _PLACEHOLDERS or set(value) == {"0"}:
        return None
    return value


def _cpuinfo_serial(root: str) -> str | None:
    text = _read(root, "proc/cpuinfo")
    for line in (text or "").splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Serial":
            return _clean(value)
    return None


def system_device_info(root: str = "/") -> dict[str, str]:
    """``serialNumber``, ``model`` and ``manufacturer`` as far as the system tells them.

    Device tree first (Raspberry Pi and other ARM boards), then ``/proc/cpuinfo``'s ``Serial``
    line, then DMI (x86; ``product_serial`` is usually readable by root only). A value that
    cannot be read, is empty, all zeros or a firmware placeholder is left out. Never raises.
    ``root`` is where the system's ``/proc`` and ``/sys`` are found (tests use a fake tree).
    """
    tree_model = _clean(_read(root, "proc/device-tree/model"))
    found = {
        "serialNumber": _clean(_read(root, "proc/device-tree/serial-number"))
        or _cpuinfo_serial(root)
        or _clean(_read(root, "sys/class/dmi/id/product_serial")),
        "model": tree_model or _clean(_read(root, "sys/class/dmi/id/product_name")),
        "manufacturer": _clean(_read(root, "sys/class/dmi/id/sys_vendor"))
        or (RASPBERRY_PI_MAKER if tree_model and tree_model.startswith("Raspberry Pi") else None),
    }
    return {key: value for key, value in found.items() if value is not None}


def _overridden(values: dict[str, str], overrides: DeviceInfoConfig) -> dict[str, str]:
    for key in DEVICE_INFO_KEYS:
        override = getattr(overrides, key)
        if override is not None:
            values[key] = override[: _limit(key)]
    return {key: values[key] for key in DEVICE_INFO_KEYS if key in values}


def gateway_device_info(
    overrides: DeviceInfoConfig, version: str, root: str = "/"
) -> dict[str, str]:
    """The gateway's ``deviceInfo``: system values, ``fwVersion`` = ``version``, ``deviceClass``
    "gateway", then every configured (non-None) value."""
    values = system_device_info(root)
    values["fwVersion"] = version[:MAX_VALUE]
    values["deviceClass"] = "gateway"
    return _overridden(values, overrides)


def device_info(
    overrides: DeviceInfoConfig, reported: Mapping[str, str] | None = None
) -> dict[str, str]:
    """An attached device's ``deviceInfo``: what its adapter reported, then the configured values.

    Reported keys outside the eight ``deviceInfo`` fields and values that are not strings are
    dropped; values are bounded like the configured ones.
    """
    values: dict[str, str] = {}
    for key, value in (reported or {}).items():
        if key in DEVICE_INFO_KEYS and isinstance(value, str):
            values[key] = value[: _limit(key)]
    return _overridden(values, overrides)
