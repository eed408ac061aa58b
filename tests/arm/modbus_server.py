"""pymodbus's own TCP server (Debian's python3-pymodbus) on loopback, for the smoke suite.

``python3 -m arm.modbus_server PORT`` serves unit 1: holding register 0 holds 2300 (230.0 V at
scale 0.1), register 10 is a setpoint the daemon writes and reads back; everything else is 0.
Prints ``ready PORT`` once listening and runs until SIGTERM.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import pymodbus.datastore
import pymodbus.server

# Untyped on purpose: the names and keywords changed across pymodbus releases (slaves/devices).
datastore: Any = pymodbus.datastore
server: Any = pymodbus.server

REGISTERS = 100
VOLTAGE_RAW = 2300


def context() -> Any:
    """Unit 1's registers. pymodbus 3.8 adds 1 to every address before the block sees it (its
    blocks are 1-based), so the block starts at 1 and wire address N is ``values[N]``."""
    values = [0] * (REGISTERS + 1)
    values[0] = VOLTAGE_RAW
    block = datastore.ModbusSequentialDataBlock(1, values)
    unit_class = getattr(datastore, "ModbusSlaveContext", None) or datastore.ModbusDeviceContext
    unit = unit_class(hr=block)
    try:
        return datastore.ModbusServerContext(slaves={1: unit}, single=False)
    except TypeError:  # pymodbus 3.10 and later call them devices
        return datastore.ModbusServerContext(devices={1: unit}, single=False)


async def serve(port: int) -> None:
    """Serve until SIGTERM."""
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    modbus = server.ModbusTcpServer(context(), address=("127.0.0.1", port))
    serving = asyncio.ensure_future(modbus.serve_forever())
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not modbus.is_active():
        if serving.done():
            serving.result()  # raises why it could not listen
        await asyncio.sleep(0.05)
    print(f"ready {port}", flush=True)
    await stop.wait()
    await modbus.shutdown()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
