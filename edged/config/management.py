"""The ``managed:`` section and each device's ``manage:`` key: the device-management agent.

See docs/dm.md. (The full set of options is filled in with the agent.)
"""

from __future__ import annotations

from edged.config.types import StrictModel


class ManagedConfig(StrictModel):
    """Device management for the gateway itself (and defaults for managed devices)."""

    enabled: bool = True


class DeviceManageConfig(StrictModel):
    """One attached device's opt-in to device management."""
