"""Commands to writes: the right registers for good values, a clear refusal for bad ones."""

from __future__ import annotations

from typing import Any

import pytest

from edged.adapters.modbus.commands import WritePlan, command_value, plan_write
from edged.adapters.modbus.config import CommandConfig, DeviceConfig
from edged.errors import CommandRejected

pytestmark = pytest.mark.modbus


def plan(command: dict[str, Any], data: Any, **device: Any) -> WritePlan:
    config = CommandConfig.model_validate(command)
    section = DeviceConfig.model_validate({"url": "tcp://h", "commands": {"c": command}, **device})
    return plan_write("c", config, section, data)


def test_envelopes() -> None:
    assert command_value({"value": 3, "reqId": "r1"}) == 3
    assert command_value(2.5) == 2.5
    with pytest.raises(CommandRejected, match="unknown keys"):
        command_value({"value": 1, "extra": 2})
    with pytest.raises(CommandRejected, match="no value"):
        command_value({"reqId": "r1"})
    with pytest.raises(CommandRejected, match="no value"):
        command_value(None)


def test_scaled_int16_uses_function_6() -> None:
    result = plan({"address": 100, "type": "int16", "scale": 0.1}, {"value": -21.5})
    assert result == WritePlan("holding", 100, registers=(0xFF29,), single=True)
    assert result.describe() == {"kind": "holding", "address": 100, "registers": [0xFF29]}


def test_multi_register_types_use_function_16_in_device_order() -> None:
    result = plan({"address": 4, "type": "float32"}, 21.5, word_order="little")
    assert result == WritePlan("holding", 4, registers=(0x0000, 0x41AC), single=False)


def test_function_multiple_forces_16_for_one_register() -> None:
    assert not plan({"address": 4, "function": "multiple"}, 7).single


def test_strings_and_coils() -> None:
    assert plan({"address": 0, "type": "string", "count": 2}, "AB").registers == (0x4142, 0)
    coil = plan({"address": 9, "kind": "coil"}, True)
    assert coil == WritePlan("coil", 9, coils=(True,), single=True)
    assert coil.describe() == {"kind": "coil", "address": 9, "coils": [True]}
    assert plan({"address": 9, "kind": "coil"}, 0).coils == (False,)
    assert not plan({"address": 9, "kind": "coil", "function": "multiple"}, 1).single


@pytest.mark.parametrize(
    ("command", "data", "message"),
    [
        ({"address": 1, "type": "int16", "min": 5, "max": 30}, 31, "above the maximum 30"),
        ({"address": 1, "type": "int16", "min": 5, "max": 30}, 4.9, "below the minimum 5"),
        ({"address": 1, "type": "int16", "scale": 0.1}, 3276.8, "outside the int16 range"),
        ({"address": 1, "type": "uint16"}, -1, "outside the uint16 range"),
        ({"address": 1}, "12", "expected a number"),
        ({"address": 1}, True, "expected a number"),
        ({"address": 1, "type": "float32"}, 1e39, "does not fit a float32"),
        ({"address": 1, "type": "float64"}, float("nan"), "finite"),
        ({"address": 1, "kind": "coil"}, "on", "expected true or false"),
        ({"address": 1, "kind": "coil"}, 2, "expected true or false"),
        ({"address": 1, "type": "string", "count": 1}, "ABC", "at most 2 fit"),
        ({"address": 1, "type": "string", "count": 1}, 5, "expected a string"),
    ],
)
def test_refusals(command: dict[str, Any], data: Any, message: str) -> None:
    with pytest.raises(CommandRejected, match=message):
        plan(command, {"value": data})
