"""The typed shape of ``edged.yaml`` (everything but the adapters' own sections)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

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

    @property
    def resolved_host(self) -> str:
        """``host`` if given, else ``<org>.messaging.<domain>``."""
        return self.host or f"{self.org}.messaging.{self.domain}"

    @property
    def resolved_port(self) -> int:
        """``port`` if given, else 8883 with TLS and 1883 without."""
        return self.port or (8883 if self.tls else 1883)


class StatusConfig(StrictModel):
    """The gateway's periodic status event."""

    interval: Annotated[float, duration_range(1.0, DAY)] = 60.0
    event: TopicName = "status"


class CommandsConfig(StrictModel):
    """How commands are carried out and answered."""

    timeout: Annotated[float, duration_range(0.01, HOUR)] = 10.0
    result_event: TopicName = "cmdResult"


class QueueConfig(StrictModel):
    """The bounded in-memory queue between the bridge and the uplink."""

    max_messages: int = Field(default=10000, ge=1, le=10_000_000)
    # Readings wait (backpressure) once either bound is reached; 16 MiB by default.
    max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024 * 1024, le=4 * 1024 * 1024 * 1024)


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


class TopLevelConfig(StrictModel):
    """Every top-level section except ``devices`` and ``adapters`` (validated separately)."""

    platform: PlatformConfig
    status: StatusConfig = StatusConfig()
    commands: CommandsConfig = CommandsConfig()
    queue: QueueConfig = QueueConfig()
    logging: LoggingConfig = LoggingConfig()
