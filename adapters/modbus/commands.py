"""Commands to writes (pure): check the value, scale it, encode it, or refuse with a reason.

A command's body is ``{"value": X}`` (``reqId``/``correlationId`` may ride along) or a bare JSON
value. Nothing is written unless the value is of the right kind, within ``min``/``max`` and
within the range of the type after scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edged.adapters.modbus.codec import DataType, encode, unscale_value
from edged.adapters.modbus.config import CommandConfig, DeviceConfig
from edged.errors import CommandRejected

_ENVELOPE_KEYS = frozenset({"reqId", "correlationId"})


@dataclass(frozen=True, slots=True)
class WritePlan:
    """One write request: registers (function 6 or 16) or coils (function 5 or 15)."""

    kind: str  # "holding" or "coil"
    address: int
    registers: tuple[int, ...] = ()
    coils: tuple[bool, ...] = ()
    single: bool = False

    def describe(self) -> dict[str, Any]:
        """What was written, for the command result."""
        if self.kind == "coil":
            return {"kind": "coil", "address": self.address, "coils": list(self.coils)}
        return {"kind": "holding", "address": self.address, "registers": list(self.registers)}


def command_value(data: Any) -> Any:
    """The value a command carries; raises :class:`CommandRejected` for any other shape."""
    if isinstance(data, dict):
        extra = set(data) - _ENVELOPE_KEYS - {"value"}
        if extra:
            raise CommandRejected(f'unknown keys {sorted(extra)}; send {{"value": ...}}')
        if "value" not in data:
            raise CommandRejected('no value; send {"value": ...}')
        return data["value"]
    if data is None:
        raise CommandRejected('no value; send a JSON body {"value": ...}')
    return data


def plan_write(name: str, command: CommandConfig, device: DeviceConfig, data: Any) -> WritePlan:
    """The write that carries out command ``name``; raises :class:`CommandRejected` if it cannot."""
    value = command_value(data)
    data_type = command.data_type
    if data_type is DataType.BOOL:
        if not isinstance(value, bool) and value not in (0, 1):
            raise CommandRejected(f"{name}: expected true or false, got {value!r}")
        single = command.function != "multiple"
        return WritePlan("coil", command.address, coils=(bool(value),), single=single)
    if data_type is DataType.STRING:
        if not isinstance(value, str):
            raise CommandRejected(f"{name}: expected a string, got {value!r}")
        raw: Any = value
    else:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandRejected(f"{name}: expected a number, got {value!r}")
        if command.min is not None and value < command.min:
            raise CommandRejected(f"{name}: {value} is below the minimum {command.min:g}")
        if command.max is not None and value > command.max:
            raise CommandRejected(f"{name}: {value} is above the maximum {command.max:g}")
        try:
            raw = unscale_value(value, data_type, command.scale, command.offset)
        except ValueError as exc:
            raise CommandRejected(f"{name}: {exc}") from None
    try:
        registers = encode(
            raw,
            data_type,
            command.size,
            device.word_order_of(command),
            device.byte_order_of(command),
        )
    except ValueError as exc:
        raise CommandRejected(f"{name}: {exc}") from None
    single = command.function == "single" or (command.function == "auto" and len(registers) == 1)
    return WritePlan("holding", command.address, registers=tuple(registers), single=single)
