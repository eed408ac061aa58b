"""The uplink: the daemon's one MQTT session with the platform (see ``docs/uplink.md``)."""

from edged.uplink.session import Uplink, UplinkClosedError
from edged.uplink.settings import GATEWAY_USERNAME, MAX_PAYLOAD, UplinkSettings
from edged.uplink.stats import IncomingMessage, UplinkState, UplinkStats

__all__ = [
    "GATEWAY_USERNAME",
    "MAX_PAYLOAD",
    "IncomingMessage",
    "Uplink",
    "UplinkClosedError",
    "UplinkSettings",
    "UplinkState",
    "UplinkStats",
]
