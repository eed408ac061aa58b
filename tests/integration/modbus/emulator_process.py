"""pymodbus's server with emulated units in a process of its own, steered over stdin.

For tests whose own thread blocks (the daemon end-to-end test waits on the platform emulator
synchronously, so an in-loop server would never answer). Started as
``python emulator_process.py UNITS_JSON``, where UNITS_JSON maps unit ids to
``{"holding": {address: value}, "input": ..., "coils": ..., "discrete": ...}``. It prints
``ready PORT``; then each stdin line is a JSON command answered by one JSON line:
``["get", unit, table, address]`` -> value, ``["set", unit, table, address, value]`` -> null.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from typing import Any

from edged.adapters.modbus import compat


def _unit(spec: dict[str, dict[str, Any]]) -> compat.EmulatedUnit:
    unit = compat.EmulatedUnit()
    for name, values in spec.items():
        getattr(unit, name).update({int(address): value for address, value in values.items()})
    return unit


async def main(units_json: str) -> None:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    units = {int(unit): _unit(spec) for unit, spec in json.loads(units_json).items()}
    server = await compat.serve_tcp(compat.EmulatedBus(units))
    print(f"ready {server.port}", flush=True)
    loop = asyncio.get_running_loop()
    try:
        while line := await loop.run_in_executor(None, sys.stdin.readline):
            command = json.loads(line)
            table: dict[int, Any] = getattr(units[command[1]], command[2])
            if command[0] == "set":
                table[command[3]] = command[4]
                print("null", flush=True)
            else:
                print(json.dumps(table.get(command[3])), flush=True)
    finally:
        await server.stop()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
