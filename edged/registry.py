"""Finds adapter packages by name and loads their config models and runners lazily.

An adapter ``NAME`` lives in ``edged.adapters.NAME``; see :mod:`edged.adapters`. Only the
config module is imported to validate a config, and the runtime module (with its hardware
library) only when a configured device uses it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, cast

from pydantic import BaseModel

from edged.adapters.base import Adapter, AdapterContext, DeviceSpec, Loc

BUILTIN_ADAPTERS = ("simulated", "serial", "modbus", "ble")

CrossCheck = Callable[[Sequence[tuple[Loc, Any]], Any], Iterable[tuple[Loc, str]]]
CreateAdapters = Callable[[Sequence[DeviceSpec[Any]], Any, AdapterContext], Sequence[Adapter]]


@dataclass(frozen=True)
class AdapterConfigSchema:
    """The config side of one adapter."""

    name: str
    device_model: type[BaseModel]
    settings_model: type[BaseModel]
    cross_check: CrossCheck | None


def _import(name: str, module: str) -> ModuleType:
    if name not in BUILTIN_ADAPTERS:
        raise LookupError(f"unknown adapter {name!r}; known: {', '.join(BUILTIN_ADAPTERS)}")
    return importlib.import_module(f"edged.adapters.{name}.{module}")


def config_schema(name: str) -> AdapterConfigSchema:
    """The validation models of adapter ``name`` (imports no hardware library)."""
    module = _import(name, "config")
    return AdapterConfigSchema(
        name=name,
        device_model=module.DeviceConfig,
        settings_model=module.Settings,
        cross_check=getattr(module, "cross_check", None),
    )


def adapter_factory(name: str) -> CreateAdapters:
    """The ``create_adapters`` function of adapter ``name`` (imports its hardware library)."""
    return cast(CreateAdapters, _import(name, "adapter").create_adapters)
