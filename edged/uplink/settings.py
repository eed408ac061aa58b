"""What the uplink needs to know to reach the platform, as one immutable value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from edged.config.models import PlatformConfig
from edged.proxyurl import parse_proxy_url
from edged.secret import Secret
from edged.uplink.connect import ProxySetting

GATEWAY_USERNAME = "use-token-auth"
"""The platform reads the password field as a device or gateway token when the username is this."""

MAX_PAYLOAD = 131072
"""The platform's payload limit in bytes; a larger publication closes the connection (code 287)."""


@dataclass(frozen=True)
class UplinkSettings:
    """Connection settings of the gateway's one MQTT session.

    ``tls`` with ``ca_file=None`` trusts the system CA store; the broker's hostname is always
    checked. ``mqtt_version`` is ``"3.1.1"`` or ``"5"``. Durations are in seconds.
    ``transport`` ``"websockets"`` carries MQTT in WebSocket frames to ``ws_path``; ``proxy`` is
    a parsed proxy URL, ``"env"`` (the environment variables decide) or None.
    """

    client_id: str
    host: str
    port: int
    username: str
    password: Secret
    tls: bool
    ca_file: str | None
    mqtt_version: str
    persistent_session: bool
    session_expiry: float
    keepalive: float
    connect_timeout: float
    reconnect_initial: float
    reconnect_max: float
    refused_initial: float
    refused_max: float
    max_inflight: int
    stable_after: float = 10.0
    """A connection that lasts this long counts as healthy: only then does the backoff reset."""
    transport: Literal["tcp", "websockets"] = "tcp"
    ws_path: str = "/mqtt"
    proxy: ProxySetting = None

    def __post_init__(self) -> None:
        if self.mqtt_version not in ("3.1.1", "5"):
            raise ValueError(f"mqtt_version must be '3.1.1' or '5', not {self.mqtt_version!r}")
        if not 1 <= self.max_inflight <= 65535:
            raise ValueError("max_inflight must be between 1 and 65535")
        if not 0 < self.reconnect_initial <= self.reconnect_max:
            raise ValueError("reconnect delays need 0 < initial <= max")
        if not 0 < self.refused_initial <= self.refused_max:
            raise ValueError("refused delays need 0 < initial <= max")
        if self.connect_timeout <= 0 or self.keepalive < 0 or self.stable_after < 0:
            raise ValueError("connect_timeout must be positive; keepalive and stable_after >= 0")
        if self.transport not in ("tcp", "websockets"):
            raise ValueError(f"transport must be 'tcp' or 'websockets', not {self.transport!r}")
        if not self.ws_path.startswith("/"):
            raise ValueError("ws_path must start with '/'")

    @classmethod
    def from_config(cls, platform: PlatformConfig, token: Secret, client_id: str) -> UplinkSettings:
        """Settings for the gateway ``client_id`` (``g:<org>:<type>:<id>``) from the config."""
        return cls(
            client_id=client_id,
            host=platform.resolved_host,
            port=platform.resolved_port,
            username=GATEWAY_USERNAME,
            password=token,
            tls=platform.tls,
            ca_file=platform.ca_file,
            mqtt_version=platform.mqtt_version,
            persistent_session=platform.persistent_session,
            session_expiry=platform.session_expiry,
            keepalive=platform.keepalive,
            connect_timeout=platform.connect_timeout,
            reconnect_initial=platform.reconnect.initial,
            reconnect_max=platform.reconnect.max,
            refused_initial=platform.reconnect.refused_initial,
            refused_max=platform.reconnect.refused_max,
            max_inflight=platform.max_inflight,
            transport=platform.transport,
            ws_path=platform.ws_path,
            proxy=_proxy(platform.proxy),
        )

    @property
    def endpoint(self) -> str:
        """``host:port`` (TCP) or the WebSocket URL, for messages."""
        if self.transport == "websockets":
            return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}{self.ws_path}"
        return f"{self.host}:{self.port}"


def _proxy(value: str | None) -> ProxySetting:
    if value is None:
        return None
    if value == "env":
        return "env"
    return parse_proxy_url(value)  # validated with the config already
