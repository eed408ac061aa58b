"""A simulated RS-485 wire: relays bytes between two ptys at the pace of a real serial line.

A pty delivers a whole frame at once, however long it would take on a wire. This relay sits
between two pty pairs (``master side <-> A ... B <-> slave side``) and gives the line its
physics:

* each character takes ``bits_per_char / baud`` seconds and is delivered when it has fully
  arrived, so the receiver sees a frame trickle in as it would from a UART;
* the line is half duplex: one frame at a time, in either direction;
* a new frame starts only after 3.5 characters of silence (1.75 ms above 19200 baud), the gap
  with which RTU ends a frame and the least a slave needs to see the request end.

Bytes written while the wire is still sending the same direction's frame continue that frame.
Run: ``python modbus_wire.py --a PTY --b PTY --baud 9600 [--bits 11]``; stop with SIGTERM, on
which it prints the bytes it carried each way as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import sys
import time
import tty
from collections import deque
from dataclasses import dataclass, field


@dataclass
class _Frame:
    direction: int
    start: float
    data: bytearray = field(default_factory=bytearray)
    sent: int = 0


class Wire:
    """The half-duplex line between end 0 and end 1 (direction 0 carries 0 -> 1)."""

    def __init__(self, fds: tuple[int, int], baud: int, bits: int) -> None:
        self.fds = fds
        self.char = bits / baud
        self.gap = 0.00175 if baud > 19200 else 3.5 * self.char
        self.queues: tuple[deque[tuple[float, bytes]], deque[tuple[float, bytes]]] = (
            deque(),
            deque(),
        )
        self.frame: _Frame | None = None
        self.last_end = -1.0
        self.carried = [0, 0]
        self.silence = [0.0, 0.0]  # line idle time before frames of each direction
        self.frames = [0, 0]

    def received(self, direction: int, data: bytes, now: float) -> None:
        """Bytes a sender wrote into its end."""
        frame = self.frame
        if frame is not None and frame.direction == direction and now <= self._end(frame):
            frame.data += data
        else:
            self.queues[direction].append((now, data))

    def _end(self, frame: _Frame) -> float:
        return frame.start + len(frame.data) * self.char

    def pump(self, now: float) -> float | None:
        """Deliver every character that has fully crossed the wire; the next deadline or None."""
        while True:
            frame = self.frame
            if frame is None:
                frame = self._start_next(now)
                if frame is None:
                    return None
                if frame.start > now:
                    return frame.start
            due = min(len(frame.data), int((now - frame.start) / self.char + 1e-9))
            if due > frame.sent:
                os.write(self.fds[1 - frame.direction], bytes(frame.data[frame.sent : due]))
                self.carried[frame.direction] += due - frame.sent
                frame.sent = due
            if frame.sent < len(frame.data):
                return frame.start + (frame.sent + 1) * self.char
            self.last_end = self._end(frame)
            self.frame = None

    def _start_next(self, now: float) -> _Frame | None:
        heads = [(queue[0][0], direction) for direction, queue in enumerate(self.queues) if queue]
        if not heads:
            return None
        _, direction = min(heads)
        arrival, data = self.queues[direction].popleft()
        frame = _Frame(direction, max(arrival, self.last_end + self.gap), bytearray(data))
        if self.last_end >= 0:
            self.silence[direction] += frame.start - self.last_end
            self.frames[direction] += 1
        # Whatever this sender wrote before the frame starts belongs to the same frame.
        queue = self.queues[direction]
        while queue and queue[0][0] <= frame.start:
            frame.data += queue.popleft()[1]
        self.frame = frame
        return frame


def _open(path: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    tty.setraw(fd)
    return fd


def main() -> int:
    """Relay until SIGTERM."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", required=True, help="pty toward the master")
    parser.add_argument("--b", required=True, help="pty toward the slave")
    parser.add_argument("--baud", type=int, required=True)
    parser.add_argument("--bits", type=int, default=11, help="bits per character (11 for 8E1, 8N2)")
    args = parser.parse_args()
    fds = (_open(args.a), _open(args.b))
    wire = Wire(fds, args.baud, args.bits)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    print("ready", flush=True)
    deadline: float | None = None
    while not stop:
        now = time.perf_counter()
        timeout = None if deadline is None else max(0.0, deadline - now)
        try:
            readable, _, _ = select.select(fds, [], [], timeout if timeout is not None else 0.5)
        except InterruptedError:
            continue
        now = time.perf_counter()
        for direction, fd in enumerate(fds):
            if fd in readable:
                try:
                    data = os.read(fd, 4096)
                except (BlockingIOError, OSError):
                    continue
                if data:
                    wire.received(direction, data, now)
        deadline = wire.pump(time.perf_counter())
    report = {
        "to_slave": wire.carried[0],
        "to_master": wire.carried[1],
        "master_silence": wire.silence[0] / max(1, wire.frames[0]),
        "slave_silence": wire.silence[1] / max(1, wire.frames[1]),
    }
    json.dump(report, sys.stdout)
    print(flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
