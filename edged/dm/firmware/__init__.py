"""Firmware download, verification and install for managed devices (docs/firmware.md)."""
