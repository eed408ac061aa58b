"""What the agent manages, from the config: the gateway and each attached device with ``manage:``.

A :class:`Target` is one managed device with its effective lifetime; :func:`manage_body` is
the ``d`` of its ``mgmt/manage`` request (PROTOCOL.md 4.5): lifetime, ``supports`` (device
actions when reboot or factory reset is configured, firmware actions when ``firmware.install``
is, each custom bundle), ``deviceInfo`` and ``metadata`` as the device's attributes hold them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from edged.config.management import (
    PLATFORM_MIN_LIFETIME,
    DeviceManageConfig,
    FirmwareConfig,
    LocationConfig,
    ManagedConfig,
)
from edged.dm.attributes import DeviceAttributes
from edged.model import DeviceIdentity

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Target:
    """One managed device and its configuration (the gateway's comes from ``managed:``)."""

    device: DeviceIdentity
    config: ManagedConfig | DeviceManageConfig
    lifetime: float
    is_gateway: bool


def targets_of(
    gateway: DeviceIdentity,
    settings: ManagedConfig,
    devices: Mapping[DeviceIdentity, DeviceManageConfig],
) -> dict[DeviceIdentity, Target]:
    """The gateway (unless ``managed.enabled`` is false) and every managed attached device.

    A lifetime below the platform's minimum is accepted with a warning (tests use short ones).
    """
    found: dict[DeviceIdentity, Target] = {}
    if settings.enabled:
        found[gateway] = Target(gateway, settings, settings.lifetime, True)
    for device, config in devices.items():
        if device != gateway:
            lifetime = settings.lifetime if config.lifetime is None else config.lifetime
            found[device] = Target(device, config, lifetime, False)
    for target in found.values():
        if 0 < target.lifetime < PLATFORM_MIN_LIFETIME:
            log.warning(
                "the manage lifetime of %s is %g s, below the platform's minimum of %g s; "
                "the platform may refuse it (meant for tests)",
                target.device,
                target.lifetime,
                PLATFORM_MIN_LIFETIME,
            )
    return found


def firmware_of(target: Target) -> FirmwareConfig | None:
    """The target's firmware settings when it can install firmware, else None (501)."""
    firmware = target.config.firmware
    return firmware if firmware is not None and firmware.install is not None else None


def local_values(target: Target, device_info: dict[str, str]) -> list[tuple[str, Any]]:
    """The attribute values the gateway's config and system give this device."""
    config = target.config
    values: list[tuple[str, Any]] = [
        ("deviceInfo", device_info),
        ("metadata", dict(config.metadata)),
    ]
    if config.location is not None:
        values.append(("location", location_value(config.location)))
    return values


def location_value(config: LocationConfig) -> dict[str, Any]:
    """A configured location as the ``d`` of ``device/update/location``."""
    return config.model_dump(exclude_none=True)


def manage_body(target: Target, attributes: DeviceAttributes) -> dict[str, Any]:
    """The ``d`` of the target's ``mgmt/manage``."""
    config = target.config
    supports: dict[str, bool] = {
        "deviceActions": bool(config.actions.reboot or config.actions.factory_reset),
        "firmwareActions": firmware_of(target) is not None,
    }
    supports.update((bundle, True) for bundle in config.custom)
    lifetime = target.lifetime
    return {
        "lifetime": int(lifetime) if lifetime == int(lifetime) else lifetime,
        "supports": supports,
        "deviceInfo": attributes.value("deviceInfo") or {},
        "metadata": attributes.value("metadata") or {},
    }
