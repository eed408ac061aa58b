"""An application's settings and credentials, from a small YAML file and the environment.

Credentials never come from the command line (where every user of the machine could read them
in the process list). The file (``~/.config/edged/app.yaml`` by default) holds any of the keys
below; an environment variable ``EDGED_APP_<KEY>`` (upper case) overrides the file's value:

============  ===================================================================
key           meaning
============  ===================================================================
key           the API key, ``a-<org>-<x>`` (the MQTT username)
token         the API token (the password; never shown)
org           the organization; taken from the key when not given
app_id        the appId (default ``edged-<8 random hex digits>``, so two commands
              never take over each other's connection)
instance_id   with ``shared``: the mixed-durability form ``A:<org>:<appId>:<instanceId>``
shared        ``true``: a scalable application ``A:<org>:<appId>``
durable       ``true``: keep the session across disconnects (not for ``A:<org>:<appId>``)
domain        the platform domain (default ``internetofthings.ibmcloud.com``)
host          the broker host (default ``<org>.messaging.<domain>``)
port          default 8883 with TLS, 1883 without, 443 over WebSockets
tls           default true (false on Quickstart, which has no TLS)
ca_file       CA certificates to verify the broker with (default: the system's)
keepalive     seconds, default 60
transport     ``tcp`` (default) or ``websockets``
ws_path       the WebSocket path, default ``/mqtt``
proxy         ``http://[user:password@]host:port``, ``socks4://...`` or ``socks5://...``
============  ===================================================================
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edged.appclient.client import AppConfig
from edged.appclient.identity import QUICKSTART, ApiKey, AppIdentity, IdentityError, org_from_key
from edged.appclient.settings import (
    DEFAULT_DOMAIN,
    DEFAULT_WS_PATH,
    ConnectionSettings,
    Transport,
    default_host,
    parse_proxy_url,
)

DEFAULT_FILE = Path("~/.config/edged/app.yaml")
ENV_PREFIX = "EDGED_APP_"
KEYS = (
    "key",
    "token",
    "org",
    "app_id",
    "instance_id",
    "shared",
    "durable",
    "domain",
    "host",
    "port",
    "tls",
    "ca_file",
    "keepalive",
    "transport",
    "ws_path",
    "proxy",
)
"""Every setting; ``EDGED_APP_<KEY>`` in the environment overrides the file's."""

_ENV_NAMES = {"app_id": "ID", "instance_id": "INSTANCE"}
"""Environment names that differ from the key's (``EDGED_APP_ID``, ``EDGED_APP_INSTANCE``)."""

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class CredentialsError(ValueError):
    """The settings or credentials are missing or invalid."""


def env_name(key: str) -> str:
    """The environment variable that sets ``key``."""
    return ENV_PREFIX + _ENV_NAMES.get(key, key.upper())


@dataclass(frozen=True)
class Loaded:
    """What :func:`load` found: the config, where it came from, and warnings to show."""

    config: AppConfig
    sources: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _read_file(path: Path, warnings: list[str]) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
        mode = path.stat().st_mode
    except OSError as exc:
        raise CredentialsError(f"{path}: {exc.strerror or exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark is not None else ""
        raise CredentialsError(f"{path}{where}: not valid YAML") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise CredentialsError(f"{path}: expected a mapping of settings")
    unknown = sorted(str(key) for key in data if key not in KEYS)
    if unknown:
        raise CredentialsError(
            f"{path}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(KEYS)}"
        )
    if "token" in data and mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.append(f"{path} holds a token and others may read it: chmod 600 {path}")
    return data


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CredentialsError(f"{name}: expected true or false, not {str(value)[:20]!r}")


def _number(name: str, value: Any) -> int:
    if isinstance(value, bool):
        raise CredentialsError(f"{name}: expected a number")
    try:
        return int(value)
    except (TypeError, ValueError):
        raise CredentialsError(f"{name}: expected a number, not {str(value)[:20]!r}") from None


def _text(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is None or value == "":
        return None
    return str(value)


def load(
    path: Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    random_suffix: str | None = None,
) -> Loaded:
    """Read the settings: ``path`` (or the default file when it exists), then the environment.

    Args:
        path: The YAML file; it must exist when given. ``None``: the default file if present.
        environ: The environment (default ``os.environ``).
        random_suffix: For tests: the default appId's suffix.

    Raises:
        CredentialsError: a missing or invalid file or setting, or no credentials.
        IdentityError: an invalid identity (appId, instanceId, Quickstart misuse).
    """
    environ = os.environ if environ is None else environ
    warnings: list[str] = []
    sources: list[str] = []
    values: dict[str, Any] = {}
    if path is None:
        default = DEFAULT_FILE.expanduser()
        if default.exists():
            path = default
    if path is not None:
        values.update(_read_file(path, warnings))
        sources.append(str(path))
    from_env = [key for key in KEYS if environ.get(env_name(key), "") != ""]
    for key in from_env:
        values[key] = environ[env_name(key)]
    if from_env:
        sources.append("environment: " + ", ".join(env_name(key) for key in from_env))
    return Loaded(_build(values, random_suffix), sources, warnings)


def _build(values: Mapping[str, Any], random_suffix: str | None) -> AppConfig:
    key, token = _text(values, "key"), _text(values, "token")
    org = _text(values, "org")
    if org is None:
        if key is None:
            raise CredentialsError(
                f"no credentials: set key and token in {DEFAULT_FILE} (or --credentials FILE), "
                f"or {env_name('key')} and {env_name('token')}"
            )
        org = org_from_key(key)
    quickstart = org == QUICKSTART
    api_key: ApiKey | None = None
    if key is not None or token is not None or not quickstart:
        if key is None or token is None:
            missing = "token" if key is not None else "key"
            raise CredentialsError(f"the API {missing} is missing ({env_name(missing)})")
        api_key = ApiKey(key, token)
    suffix = random_suffix if random_suffix is not None else secrets.token_hex(4)
    identity = AppIdentity(
        org,
        _text(values, "app_id") or f"edged-{suffix}",
        shared=_flag("shared", values.get("shared", False)),
        instance_id=_text(values, "instance_id"),
        durable=_flag("durable", values.get("durable", False)),
    )
    transport = _text(values, "transport") or "tcp"
    if transport not in ("tcp", "websockets"):
        raise CredentialsError(f"transport: expected tcp or websockets, not {transport[:20]!r}")
    tls = _flag("tls", values.get("tls", not quickstart))
    if "port" in values and values["port"] not in (None, ""):
        port = _number("port", values["port"])
    else:
        port = 443 if transport == "websockets" else 8883 if tls else 1883
    proxy_url = _text(values, "proxy")
    try:
        connection = ConnectionSettings(
            host=_text(values, "host")
            or default_host(org, _text(values, "domain") or DEFAULT_DOMAIN),
            port=port,
            tls=tls,
            ca_file=_text(values, "ca_file"),
            keepalive=_number("keepalive", values.get("keepalive", 60)),
            transport=_transport(transport),
            ws_path=_text(values, "ws_path") or DEFAULT_WS_PATH,
            proxy=parse_proxy_url(proxy_url) if proxy_url is not None else None,
        )
    except ValueError as exc:
        raise CredentialsError(str(exc)) from None
    if api_key is not None and org != QUICKSTART and key is not None:
        _check_key_org(key, org)
    return AppConfig(identity, api_key, connection)


def _transport(value: str) -> Transport:
    return "websockets" if value == "websockets" else "tcp"


def _check_key_org(key: str, org: str) -> None:
    try:
        key_org = org_from_key(key)
    except IdentityError:
        return  # a key of another form: the broker decides
    if key_org != org:
        raise CredentialsError(f"the API key belongs to org {key_org!r}, not {org!r}")
