"""The gateway notify message the platform publishes on ``iot-2/type/<gwT>/id/<gwD>/notify``
(PROTOCOL.md §3.2). Pure."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from edged.model import DeviceIdentity

# The documented error texts. No numeric RC values are documented for them (PROTOCOL.md §7.1).
TOPIC_NOT_ALLOWED = "Topic does not match any allowed topic rules."
INVALID_DEVICE_TYPE = "Device type is not valid."
INVALID_DEVICE_ID = "Device ID is not valid."
GATEWAY_DEVICE_LIMIT = "Maximum number of devices per gateway is reached."
ORG_DEVICE_LIMIT = "Maximum number of devices per organization is reached."
INTERNAL_ERROR = "Failed to create device because of internal errors."

DEFAULT_RC = 400
"""RC when a test gives none; the real values are undocumented, so edged treats RC as opaque."""


def notify_body(
    *,
    topic: str,
    client_id: str,
    message: str,
    device: DeviceIdentity | None = None,
    request: str = "publish",
    rc: int | str = DEFAULT_RC,
    at: float,
) -> dict[str, Any]:
    """The notify payload. ``Type`` and ``Id`` are left out when ``device`` is ``None``, as the
    platform does when the topic itself was invalid."""
    body: dict[str, Any] = {"Request": request, "Time": iso_time(at), "Topic": topic}
    if device is not None:
        body["Type"] = device.type_id
        body["Id"] = device.device_id
    body["Client"] = client_id
    body["RC"] = rc
    body["Message"] = message
    return body


def iso_time(at: float) -> str:
    """``at`` (epoch seconds) in ISO 8601 UTC with milliseconds: ``2026-11-23T12:00:01.234Z``."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
