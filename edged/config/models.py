"""The typed shape of ``edged.yaml`` (everything but the adapters' own sections)."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, model_validator

from edged.config.management import DeviceManageConfig, ManagedConfig
from edged.config.registration import RegistrationConfig
from edged.config.sizes import GIB, KIB, MIB, byte_size
from edged.config.types import (
    DAY,
    HOUR,
    MINUTE,
    EnvName,
    HostName,
    PlatformId,
    StrictModel,
    TopicName,
    duration_range,
)
from edged.proxyurl import parse_proxy_url

MQTT_MAX_SESSION_EXPIRY = 0xFFFFFFFF
"""MQTT 5's largest session expiry interval (the broker reads it as "never expires")."""

ReconnectDelay = Annotated[float, duration_range(0.01, DAY)]


class GatewayIdentityConfig(StrictModel):
    """The gateway's own platform identity."""

    type: PlatformId
    id: PlatformId


class ReconnectConfig(StrictModel):
    """Jittered exponential backoff between connection attempts."""

    initial: ReconnectDelay = 1.0
    max: ReconnectDelay = 120.0
    # After the broker refused our credentials: retrying fast cannot help and floods its log.
    refused_initial: ReconnectDelay = 60.0
    refused_max: ReconnectDelay = 900.0

    @model_validator(mode="after")
    def _ordered(self) -> ReconnectConfig:
        if self.initial > self.max or self.refused_initial > self.refused_max:
            raise ValueError("initial delays must not exceed their max")
        return self


def _mqtt_version(value: object) -> object:
    if not isinstance(value, str | int | float):  # a list or mapping: the Literal refuses it
        return value
    aliases: dict[object, object] = {5: "5", 311: "3.1.1", "5.0": "5"}
    return aliases.get(value, value)


def _ws_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must start with '/' (the platform's is /mqtt)")
    if any(not ("!" <= char <= "~") for char in value):
        raise ValueError("must be printable ASCII without spaces (percent-encode the rest)")
    return value


def _proxy(value: str | None) -> str | None:
    if value is None or value == "env":
        return value
    parse_proxy_url(value)  # its errors never show the password
    return value


class PlatformConfig(StrictModel):
    """How to reach and authenticate to the platform's MQTT service."""

    org: PlatformId
    domain: HostName = "internetofthings.ibmcloud.com"
    host: HostName | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    tls: bool = True
    ca_file: str | None = None
    gateway: GatewayIdentityConfig
    token_file: str | None = None
    token_env: EnvName = "EDGED_TOKEN"  # noqa: S105 - the variable's name, not a secret
    mqtt_version: Annotated[Literal["3.1.1", "5"], BeforeValidator(_mqtt_version)] = "3.1.1"
    persistent_session: bool = True
    session_expiry: Annotated[float, duration_range(0.0, MQTT_MAX_SESSION_EXPIRY)] = DAY
    keepalive: Annotated[float, duration_range(5.0, HOUR)] = 60.0
    connect_timeout: Annotated[float, duration_range(0.1, 10 * MINUTE)] = 30.0
    reconnect: ReconnectConfig = ReconnectConfig()
    qos: Literal[0, 1] = 1
    max_inflight: int = Field(default=100, ge=1, le=65535)
    # MQTT over WebSockets (port 443 with TLS) for sites that let only HTTPS out.
    transport: Literal["tcp", "websockets"] = "tcp"
    ws_path: Annotated[str, AfterValidator(_ws_path)] = "/mqtt"
    # null: connect directly; "env": https_proxy/http_proxy/all_proxy/no_proxy decide;
    # or http://[user:password@]host:port (CONNECT), socks5://..., socks5h://...
    proxy: Annotated[str | None, AfterValidator(_proxy)] = None

    @property
    def resolved_host(self) -> str:
        """``host`` if given, else ``<org>.messaging.<domain>``."""
        return self.host or f"{self.org}.messaging.{self.domain}"

    @property
    def resolved_port(self) -> int:
        """``port`` if given, else 8883 with TLS and 1883 without (WebSockets: 443 and 80)."""
        if self.port:
            return self.port
        if self.transport == "websockets":
            return 443 if self.tls else 80
        return 8883 if self.tls else 1883


class StatusConfig(StrictModel):
    """The gateway's periodic status event."""

    interval: Annotated[float, duration_range(1.0, DAY)] = 60.0
    event: TopicName = "status"


class CommandsConfig(StrictModel):
    """How commands are carried out and answered."""

    timeout: Annotated[float, duration_range(0.01, HOUR)] = 10.0
    result_event: TopicName = "cmdResult"


class StorageConfig(StrictModel):
    """The durable outbox (docs/outbox.md)."""

    # Default: $STATE_DIRECTORY/outbox.sqlite under systemd, else /var/lib/edged/outbox.sqlite.
    path: str | None = None
    # Above this many bytes stored, the oldest telemetry is dropped (counted per device).
    max_bytes: Annotated[int, *byte_size(MIB, 1024 * GIB)] = 64 * MIB
    # Messages held in memory; beyond it they stay on disk and are read back in order.
    memory_bytes: Annotated[int, *byte_size(256 * KIB, GIB)] = 8 * MIB
    commit_interval: Annotated[float, duration_range(0.0, 10.0)] = 0.1
    commit_batch: int = Field(default=1000, ge=1, le=100_000)
    synchronous: Literal["normal", "full"] = "normal"
    # Telemetry older than this when its turn comes is dropped (counted); none by default.
    max_age: Annotated[float, duration_range(1.0, 3650 * DAY)] | None = None
    # False: QoS 0 events stay in memory only (faster, lost on a crash or restart).
    qos0_on_disk: bool = True
    # Events sent ahead of other telemetry and never dropped for it.
    alarm_events: tuple[TopicName, ...] = ()

    @property
    def resolved_path(self) -> str:
        """``path`` if given, else in the service's state directory."""
        if self.path:
            return self.path
        state = os.environ.get("STATE_DIRECTORY", "").split(":")[0] or "/var/lib/edged"
        return os.path.join(state, "outbox.sqlite")


class ControlConfig(StrictModel):
    """The control socket ``edged status`` talks to (docs/service.md)."""

    # Default: $RUNTIME_DIRECTORY/control.sock under systemd, else /run/edged/control.sock.
    socket: str | None = None
    enabled: bool = True


class LoggingConfig(StrictModel):
    """Log verbosity."""

    level: Literal["debug", "info", "warning", "error"] = "info"


class DeviceCommonConfig(StrictModel):
    """Keys every device has; its adapter's own options sit under a key named for the adapter."""

    id: PlatformId
    type: PlatformId
    adapter: str
    event: TopicName = "reading"
    enabled: bool = True
    # Device management for this device (absent: not managed).
    manage: DeviceManageConfig | None = None


class TopLevelConfig(StrictModel):
    """Every top-level section except ``devices`` and ``adapters`` (validated separately)."""

    platform: PlatformConfig
    status: StatusConfig = StatusConfig()
    commands: CommandsConfig = CommandsConfig()
    storage: StorageConfig = StorageConfig()
    logging: LoggingConfig = LoggingConfig()
    control: ControlConfig = ControlConfig()
    registration: RegistrationConfig = RegistrationConfig()
    managed: ManagedConfig = ManagedConfig()
