"""Sizes in bytes as config values: ``65536``, ``"64MiB"``, ``"512 KiB"``, ``"1GB"``."""

from __future__ import annotations

import re

from pydantic import BeforeValidator, Field
from pydantic.fields import FieldInfo

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kib": KIB,
    "mib": MIB,
    "gib": GIB,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
}
_SIZE_RE = re.compile(r"\s*(\d+)\s*([a-z]*)\s*")


def _byte_size(value: object) -> object:
    """``65536``, ``"64MiB"``, ``"512 KiB"``, ``"1GB"`` -> bytes (other values left to pydantic)."""
    if isinstance(value, str):
        match = _SIZE_RE.fullmatch(value.lower())
        if match is None or match.group(2) not in _SIZE_UNITS:
            raise ValueError("a size in bytes, or with a unit: KiB, MiB, GiB, KB, MB, GB")
        return int(match.group(1)) * _SIZE_UNITS[match.group(2)]
    return value


def byte_size(low: int, high: int) -> tuple[BeforeValidator, FieldInfo]:
    """A size in bytes between ``low`` and ``high`` (inclusive), units allowed."""
    return BeforeValidator(_byte_size), Field(ge=low, le=high, strict=False)
