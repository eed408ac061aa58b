"""The uplink: the daemon's one MQTT session with the platform (see ``docs/uplink.md``)."""

from edged.errors import PublishRejected
from edged.uplink.delivery import DeliveryLost, UplinkClosedError
from edged.uplink.session import Uplink
from edged.uplink.settings import GATEWAY_USERNAME, MAX_PAYLOAD, UplinkSettings
from edged.uplink.stats import IncomingMessage, UplinkState, UplinkStats

__all__ = [
    "GATEWAY_USERNAME",
    "MAX_PAYLOAD",
    "DeliveryLost",
    "IncomingMessage",
    "PublishRejected",
    "Uplink",
    "UplinkClosedError",
    "UplinkSettings",
    "UplinkState",
    "UplinkStats",
]
