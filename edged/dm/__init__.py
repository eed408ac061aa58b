"""The iotdm-1 device-management agent (docs/dm.md)."""
