"""pymodbus's own server with edged's emulated units, in a process of its own (for benchmarks).

``python modbus_emulator.py tcp`` serves TCP on a free loopback port;
``python modbus_emulator.py serial PATH BAUD PARITY STOPBITS`` serves RTU on a serial port.
Unit 1 holds registers 0..1999 (value = address). Prints ``ready PORT`` once serving, and on
SIGTERM the number of reads it served as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

from edged.adapters.modbus import compat


async def serve(argv: list[str]) -> int:
    logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
    unit = compat.EmulatedUnit(holding={address: address for address in range(2000)})
    bus = compat.EmulatedBus({1: unit})
    if argv[0] == "tcp":
        server = await compat.serve_tcp(bus)
    else:
        path, baud, parity, stopbits = argv[1], int(argv[2]), argv[3], int(argv[4])
        server = await compat.serve_serial(
            bus, path, baudrate=baud, parity=parity, stopbits=stopbits
        )
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(f"ready {server.port}", flush=True)
    await stop.wait()
    await server.stop()
    print(json.dumps({"reads": unit.reads}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(serve(sys.argv[1:])))
