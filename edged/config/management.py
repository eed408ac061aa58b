"""The ``managed:`` section and each device's ``manage:`` key: the device-management agent.

The gateway is managed when ``managed.enabled`` is true (the default); an attached device is
managed when its ``manage:`` key is present. Actions are either a local command run by the
daemon (``run``: an argv list, never a shell line) or, for attached devices, one of the
device's own adapter commands (``command`` with fixed ``data``). See docs/dm.md.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from edged.config.sizes import GIB, KIB, MIB, byte_size
from edged.config.types import DAY, HOUR, MINUTE, StrictModel, TopicName, duration_range

PLATFORM_MIN_LIFETIME = 3600.0
"""The platform's shortest supported manage lifetime; shorter ones are accepted with a warning."""

_DM_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]{1,255}")


def _dm_name(value: str) -> str:
    if _DM_NAME_RE.fullmatch(value) is None:
        raise ValueError("must be 1-255 of A-Z a-z 0-9 - _ .")
    return value


DMName = Annotated[str, Field(min_length=1, max_length=255)]
"""A bundle, action or parameter name (PROTOCOL.md 4.12)."""


class DeviceInfoConfig(StrictModel):
    """``deviceInfo`` values sent with manage; each overrides what is read from the system."""

    serialNumber: str | None = Field(default=None, max_length=256)  # noqa: N815 - wire names
    manufacturer: str | None = Field(default=None, max_length=256)
    model: str | None = Field(default=None, max_length=256)
    deviceClass: str | None = Field(default=None, max_length=256)  # noqa: N815
    description: str | None = Field(default=None, max_length=1024)
    fwVersion: str | None = Field(default=None, max_length=256)  # noqa: N815
    hwVersion: str | None = Field(default=None, max_length=256)  # noqa: N815
    descriptiveLocation: str | None = Field(default=None, max_length=1024)  # noqa: N815


class LocationConfig(StrictModel):
    """A fixed location in WGS84 decimal degrees; elevation and accuracy in metres."""

    latitude: float = Field(ge=-90.0, le=90.0)
    longitude: float = Field(ge=-180.0, le=180.0)
    elevation: float | None = Field(default=None, ge=-20_000.0, le=100_000.0)
    accuracy: float | None = Field(default=None, ge=0.0, le=1e7)


class ActionParameter(StrictModel):
    """A parameter a custom action declares (PROTOCOL.md 4.12)."""

    name: DMName
    required: bool = False
    default: str | None = None
    # A regular expression the value must match in full (checked before the action runs).
    pattern: str | None = None

    _check_name = field_validator("name")(_dm_name)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
        return value


Builtin = Literal["logind-reboot", "install-package"]
"""The gateway's privileged acts, through the narrow paths of docs/privileged.md: reboot the
machine through logind, install a verified .deb of edged through the root helper unit."""


class ActionConfig(StrictModel):
    """How one device-management action is carried out: exactly one of ``run``, ``command``
    or ``builtin``.

    ``run`` is an argv list run by the daemon (parameters reach it as environment variables
    ``EDGED_PARAM_<NAME>``); ``command`` names one of the device's adapter commands, sent with
    ``data`` (parameters are added to ``data``); ``builtin`` (the gateway only) is one of the
    privileged acts of :data:`Builtin`.
    """

    run: tuple[str, ...] | None = Field(default=None, min_length=1, max_length=64)
    command: TopicName | None = None
    builtin: Builtin | None = None
    data: dict[str, Any] = Field(default_factory=dict)
    timeout: Annotated[float, duration_range(0.1, HOUR)] = 60.0
    parameters: tuple[ActionParameter, ...] = ()

    @model_validator(mode="after")
    def _one_way(self) -> ActionConfig:
        if sum(way is not None for way in (self.run, self.command, self.builtin)) != 1:
            raise ValueError(
                "give exactly one of run (a local command), command (an adapter command) or builtin"
            )
        if self.run is not None and not self.run[0].startswith("/"):
            raise ValueError("run: the program must be an absolute path")
        if self.run is not None and self.data:
            raise ValueError("data goes with command, not with run")
        return self


class FirmwareConfig(StrictModel):
    """Firmware download and install (``supports.firmwareActions``; PROTOCOL.md 4.11)."""

    # How a downloaded, verified image is installed; its path is passed as EDGED_FIRMWARE_PATH
    # (run), as data.path (command). None: firmware actions are not supported (501).
    install: ActionConfig | None = None
    # CA bundle for HTTPS downloads; default: the system's trust store.
    ca_file: str | None = None
    # Plain http:// URIs only when this is true.
    allow_http: bool = False
    max_bytes: Annotated[int, *byte_size(KIB, 4 * GIB)] = 256 * MIB
    timeout: Annotated[float, duration_range(1.0, DAY)] = 30 * MINUTE
    """The longest a download may take in all."""
    connect_timeout: Annotated[float, duration_range(0.1, 10 * MINUTE)] = 30.0


GATEWAY_FIRMWARE = FirmwareConfig(
    install=ActionConfig(builtin="install-package", timeout=30 * MINUTE)
)
"""The gateway's default: install a verified .deb of edged through the root helper."""


class DeviceActionsConfig(StrictModel):
    """Reboot and factory reset (``supports.deviceActions``)."""

    reboot: ActionConfig | None = None
    factory_reset: ActionConfig | None = None


CustomBundles = dict[DMName, dict[DMName, ActionConfig]]
"""bundleId -> actionId -> action (``mgmt/custom/<bundleId>/<actionId>``)."""


def _check_bundles(value: CustomBundles) -> CustomBundles:
    for bundle, actions in value.items():
        _dm_name(bundle)
        for action in actions:
            _dm_name(action)
    return value


Lifetime = Annotated[float, duration_range(0.0, 365 * DAY)]
"""0 means never dormant; below :data:`PLATFORM_MIN_LIFETIME` only with a warning."""


class DeviceManageConfig(StrictModel):
    """One attached device's device management (present: the device is managed)."""

    lifetime: Lifetime | None = None
    """Defaults to ``managed.lifetime``."""
    device_info: DeviceInfoConfig = DeviceInfoConfig()
    metadata: dict[str, Any] = Field(default_factory=dict)
    location: LocationConfig | None = None
    actions: DeviceActionsConfig = DeviceActionsConfig()
    custom: CustomBundles = Field(default_factory=dict)
    firmware: FirmwareConfig | None = None

    _check_custom = field_validator("custom")(_check_bundles)

    @model_validator(mode="after")
    def _no_builtins(self) -> DeviceManageConfig:
        if any(action.builtin is not None for action in _actions_of(self)):
            raise ValueError("builtin actions are the gateway's own (managed:)")
        return self


class ManagedConfig(StrictModel):
    """Device management for the gateway itself, and the agent's own limits."""

    enabled: bool = True
    lifetime: Lifetime = HOUR
    device_info: DeviceInfoConfig = DeviceInfoConfig()
    metadata: dict[str, Any] = Field(default_factory=dict)
    # A fixed location; without it the gateway's location comes from a GPS device, if any.
    location: LocationConfig | None = None
    actions: DeviceActionsConfig = DeviceActionsConfig()
    custom: CustomBundles = Field(default_factory=dict)
    firmware: FirmwareConfig | None = GATEWAY_FIRMWARE
    # Waiting for the platform's answer to our own requests (manage, location, diag).
    response_timeout: Annotated[float, duration_range(0.1, 10 * MINUTE)] = 30.0
    # Every platform request is answered within this (500 when an action takes longer).
    request_timeout: Annotated[float, duration_range(0.1, HOUR)] = 60.0
    # Platform requests handled at once; beyond it they are answered 409 (retry later).
    max_requests: int = Field(default=64, ge=1, le=10_000)
    # A location update is sent when the position moved this far (metres) ...
    location_min_distance: float = Field(default=10.0, ge=0.0, le=1e7)
    # ... and at most this often.
    location_min_interval: Annotated[float, duration_range(0.0, DAY)] = 60.0
    # Diagnostics (error codes and logs) per device at most this often; changes in between
    # are coalesced.
    diag_min_interval: Annotated[float, duration_range(0.0, DAY)] = 10.0
    # Default: dm.json next to the outbox's database.
    path: str | None = None

    _check_custom = field_validator("custom")(_check_bundles)

    @model_validator(mode="after")
    def _gateway_runs_locally(self) -> ManagedConfig:
        if any(action.command is not None for action in _actions_of(self)):
            raise ValueError("the gateway's actions use run or builtin (it has no adapter)")
        return self


def _actions_of(config: ManagedConfig | DeviceManageConfig) -> list[ActionConfig]:
    actions = [config.actions.reboot, config.actions.factory_reset]
    if config.firmware is not None:
        actions.append(config.firmware.install)
    actions.extend(a for bundle in config.custom.values() for a in bundle.values())
    return [action for action in actions if action is not None]
