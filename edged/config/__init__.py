"""Load and validate ``edged.yaml``: every problem is reported at once, with file and line.

:func:`load_config` never touches network or hardware: it reads the YAML file, the token file
and the CA file (each a bounded regular file), imports only the adapters' config modules, and
raises :class:`~edged.errors.ConfigError` listing each problem as one line
``FILE:LINE: key.path: message``. Whatever the file holds, it raises nothing else and returns
in bounded time. A valid config may still carry :attr:`Config.warnings` (same format) about
settings that work but are unsafe.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from edged import registry
from edged.adapters.base import DeviceSpec, Loc
from edged.config.files import FileProblem, read_regular_file
from edged.config.management import PLATFORM_MIN_LIFETIME, DeviceManageConfig, ManagedConfig
from edged.config.models import (
    CommandsConfig,
    ControlConfig,
    DeviceCommonConfig,
    LoggingConfig,
    PlatformConfig,
    StatusConfig,
    StorageConfig,
    TopLevelConfig,
)
from edged.config.registration import RegistrationConfig
from edged.config.report import format_problem
from edged.config.yamlsource import YamlDocument, format_loc, load_yaml
from edged.errors import ConfigError
from edged.model import DeviceIdentity
from edged.secret import Secret

__all__ = ["Config", "ConfiguredDevice", "Secret", "format_loc", "load_config"]

MAX_CONFIG_BYTES = 1024 * 1024
"""The largest config file read (a config with hundreds of devices is well under 200 KiB)."""
MAX_TOKEN_BYTES = 4096
MAX_CA_BYTES = 1024 * 1024
"""A CA bundle; Debian's whole system bundle is about 220 KiB."""


@dataclass(frozen=True)
class ConfiguredDevice:
    """One attached device: its identity, adapter, and validated adapter section."""

    identity: DeviceIdentity
    adapter: str
    event: str
    section: Any
    loc: Loc
    manage: DeviceManageConfig | None = None
    """Its device-management options; None when the device is not managed."""

    def spec(self) -> DeviceSpec[Any]:
        """The view handed to the adapter plugin."""
        return DeviceSpec(
            identity=self.identity, section=self.section, event=self.event, loc=self.loc
        )


@dataclass(frozen=True)
class Config:
    """The whole validated configuration."""

    path: str
    platform: PlatformConfig
    token: Secret
    status: StatusConfig
    commands: CommandsConfig
    storage: StorageConfig
    logging: LoggingConfig
    control: ControlConfig
    registration: RegistrationConfig
    managed: ManagedConfig
    devices: tuple[ConfiguredDevice, ...]
    adapter_settings: Mapping[str, BaseModel] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    """Settings that work but are unsafe, each ``FILE:LINE: key.path: warning: message``."""

    @property
    def gateway(self) -> DeviceIdentity:
        """The gateway's own identity."""
        return DeviceIdentity(self.platform.gateway.type, self.platform.gateway.id)

    @property
    def adapters_in_use(self) -> list[str]:
        """Adapter names used by at least one device, in first-use order."""
        return list(dict.fromkeys(device.adapter for device in self.devices))


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required key is missing",
}


def _has(data: Any, part: str | int) -> bool:
    if isinstance(data, dict):
        return part in data
    return isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)


def _error_loc(data: Any, error: Mapping[str, Any]) -> Loc:
    """pydantic's error location without the labels of union members and validators.

    Those labels (``function-after[_finite(), float]``, ``literal['auto']``) mean nothing to the
    operator. A part is dropped only if it holds a bracket and is not a key in ``data``.
    """
    kept: list[str | int] = []
    for part in error["loc"]:
        if not isinstance(part, str | int):
            continue
        if _has(data, part):
            data = data[part]
        elif isinstance(part, str) and "[" in part:
            continue
        else:
            data = None
        kept.append(part)
    return tuple(kept)


def _validate(
    doc: YamlDocument, model: type[BaseModel], data: Any, loc: Loc, problems: list[str]
) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        found: dict[str, None] = {}  # a union reports once per member: keep one of each line
        for error in exc.errors(include_url=False):
            err_loc = (*loc, *_error_loc(data, error))
            message = _MESSAGES.get(error["type"], error["msg"])
            if error["type"] == "value_error":
                message = str(error.get("ctx", {}).get("error", message))
            found[doc.problem(err_loc, message)] = None
        problems.extend(found)
        return None


def _read_token(
    platform: PlatformConfig, doc: YamlDocument, problems: list[str], warnings: list[str]
) -> Secret:
    if platform.token_file:
        loc: Loc = ("platform", "token_file")
        try:
            content = read_regular_file(platform.token_file, MAX_TOKEN_BYTES)
            token = content.data.decode("utf-8").strip()
        except FileProblem as exc:
            problems.append(doc.problem(loc, f"cannot read the token file: {exc.message}"))
            return Secret("")
        except UnicodeDecodeError:
            problems.append(doc.problem(loc, "the token file is not UTF-8 text"))
            return Secret("")
        if not token:
            problems.append(doc.problem(loc, "the token file is empty"))
        if content.mode & 0o007:
            warnings.append(
                doc.problem(
                    loc,
                    f"warning: other users can access the token file (mode {content.mode:04o});"
                    " make it 0600, or 0640 with group edged",
                )
            )
        return Secret(token)
    token = os.environ.get(platform.token_env, "")
    if not token:
        problems.append(
            doc.problem(
                ("platform",),
                f"no token: set token_file, or the environment variable {platform.token_env}",
            )
        )
    return Secret(token)


def _check_ca_file(platform: PlatformConfig, doc: YamlDocument, problems: list[str]) -> None:
    if platform.ca_file is None:
        return
    loc: Loc = ("platform", "ca_file")
    if not platform.tls:
        problems.append(doc.problem(loc, "ca_file is set but tls is false"))
        return
    try:
        content = read_regular_file(platform.ca_file, MAX_CA_BYTES)
    except FileProblem as exc:
        problems.append(doc.problem(loc, f"cannot read the CA file: {exc.message}"))
        return
    if b"-----BEGIN CERTIFICATE-----" not in content.data:
        problems.append(doc.problem(loc, "the CA file holds no PEM certificate"))


def _is_loopback(host: str) -> bool:
    name = host.strip("[]").rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_plain_tcp(platform: PlatformConfig, doc: YamlDocument, warnings: list[str]) -> None:
    host = platform.resolved_host
    if platform.tls or _is_loopback(host):
        return
    warnings.append(
        doc.problem(
            ("platform", "tls"),
            f"warning: tls is false: the token and all data go to {host} unencrypted"
            " and the broker is not authenticated",
        )
    )


def _check_lifetimes(
    managed: ManagedConfig, devices: list[ConfiguredDevice], doc: YamlDocument, warnings: list[str]
) -> None:
    places: list[tuple[Loc, float | None]] = [(("managed", "lifetime"), managed.lifetime)]
    places.extend(
        ((*device.loc, "manage", "lifetime"), device.manage.lifetime)
        for device in devices
        if device.manage is not None
    )
    for loc, lifetime in places:
        if lifetime and lifetime < PLATFORM_MIN_LIFETIME:
            warnings.append(
                doc.problem(
                    loc,
                    f"warning: a lifetime of {lifetime:g} s is below the platform's minimum of "
                    f"{PLATFORM_MIN_LIFETIME:g} s (the platform may refuse it; meant for tests)",
                )
            )


def _load_devices(
    doc: YamlDocument, raw_devices: Any, problems: list[str]
) -> list[ConfiguredDevice]:
    if raw_devices is None:
        return []
    if not isinstance(raw_devices, list):
        problems.append(doc.problem(("devices",), "must be a list of devices"))
        return []
    devices: list[ConfiguredDevice] = []
    seen: dict[DeviceIdentity, Loc] = {}
    for index, raw in enumerate(raw_devices):
        loc: Loc = ("devices", index)
        if not isinstance(raw, dict):
            problems.append(doc.problem(loc, "a device must be a mapping"))
            continue
        adapter = raw.get("adapter")
        schema = None
        if isinstance(adapter, str):
            try:
                schema = registry.config_schema(adapter)
            except LookupError as exc:
                problems.append(doc.problem((*loc, "adapter"), str(exc)))
        common_raw = {key: value for key, value in raw.items() if key != adapter}
        common = _validate(doc, DeviceCommonConfig, common_raw, loc, problems)
        section = None
        if schema is not None:
            section = _validate(
                doc, schema.device_model, raw.get(schema.name) or {}, (*loc, schema.name), problems
            )
        if common is None:
            continue
        identity = DeviceIdentity(common.type, common.id)
        if identity in seen:
            problems.append(
                doc.problem(
                    (*loc, "id"),
                    f"device {identity} is already defined at {format_loc(seen[identity])}",
                )
            )
            continue
        seen[identity] = loc
        if section is None or not common.enabled:
            continue
        devices.append(
            ConfiguredDevice(identity, common.adapter, common.event, section, loc, common.manage)
        )
    return devices


def _load_adapter_settings(
    doc: YamlDocument, raw: Any, devices: list[ConfiguredDevice], problems: list[str]
) -> dict[str, BaseModel]:
    raw = raw or {}
    if not isinstance(raw, dict):
        problems.append(doc.problem(("adapters",), "must be a mapping of adapter name to settings"))
        raw = {}
    names = list(dict.fromkeys([*(str(name) for name in raw), *(d.adapter for d in devices)]))
    settings: dict[str, BaseModel] = {}
    for name in names:
        loc: Loc = ("adapters", name)
        try:
            schema = registry.config_schema(name)
        except LookupError as exc:
            problems.append(doc.problem(loc, str(exc)))
            continue
        model = _validate(doc, schema.settings_model, raw.get(name) or {}, loc, problems)
        if model is None:
            continue
        settings[name] = model
        if schema.cross_check is not None:
            mine = [(d.loc, d.section) for d in devices if d.adapter == name]
            problems.extend(
                doc.problem(where, message) for where, message in schema.cross_check(mine, model)
            )
    return settings


def load_config_text(text: str, path: str = "<config>") -> Config:
    """Validate config ``text``; raises :class:`ConfigError` with every problem found."""
    doc = load_yaml(text, path)
    problems = list(doc.problems)
    data = doc.data if doc.data is not None else {}
    if problems:
        raise ConfigError(problems)
    if not isinstance(data, dict):
        raise ConfigError([doc.problem((), "the config must be a mapping of sections")])
    top_raw = {key: value for key, value in data.items() if key not in ("devices", "adapters")}
    top = _validate(doc, TopLevelConfig, top_raw, (), problems)
    token = Secret("")
    warnings: list[str] = []
    if top is not None:
        token = _read_token(top.platform, doc, problems, warnings)
        _check_ca_file(top.platform, doc, problems)
        _check_plain_tcp(top.platform, doc, warnings)
    devices = _load_devices(doc, data.get("devices"), problems)
    if top is not None:
        gateway = DeviceIdentity(top.platform.gateway.type, top.platform.gateway.id)
        problems.extend(
            doc.problem(
                (*device.loc, "id"),
                "this is the gateway's own identity; attached devices need their own",
            )
            for device in devices
            if device.identity == gateway
        )
    settings = _load_adapter_settings(doc, data.get("adapters"), devices, problems)
    if top is not None:
        _check_lifetimes(top.managed, devices, doc, warnings)
    if problems or top is None:
        raise ConfigError(problems)
    return Config(
        path=path,
        platform=top.platform,
        token=token,
        status=top.status,
        commands=top.commands,
        storage=top.storage,
        logging=top.logging,
        control=top.control,
        registration=top.registration,
        managed=top.managed,
        devices=tuple(devices),
        adapter_settings=settings,
        warnings=tuple(warnings),
    )


def load_config(path: str) -> Config:
    """Read and validate the config file at ``path`` (a regular file of at most 1 MiB)."""
    try:
        text = read_regular_file(path, MAX_CONFIG_BYTES).data.decode("utf-8")
    except FileProblem as exc:
        message = f"cannot read the config file: {exc.message}"
        raise ConfigError([format_problem(path, 1, "(file)", message)]) from exc
    except UnicodeDecodeError as exc:
        line = exc.object.count(b"\n", 0, exc.start) + 1
        message = f"the config file is not UTF-8 text (byte {exc.start + 1})"
        raise ConfigError([format_problem(path, line, "(file)", message)]) from exc
    return load_config_text(text, path)
