"""Benchmark helper: write N 80-byte lines to a pty master fd, flat out or paced to a baud rate.

Run by bench_serial.py as a separate process so its CPU time is not counted against the reader:
``python serial_feed.py FD COUNT BAUD FORMAT``. BAUD 0 means as fast as the pty accepts;
FORMAT is ``kv`` (``seq=1 t=21.50 ...``) or ``json`` (``{"seq":1,"t":21.5,...}``).
"""

from __future__ import annotations

import os
import sys
import time

LINE_LENGTH = 80


def line(index: int, fmt: str = "kv") -> bytes:
    """Line ``index``, padded to exactly 80 bytes including the newline."""
    if fmt == "json":
        body = b'{"seq":%d,"t":21.5,"h":40.1,"p":1013.25,"v":3.301,"pad":"' % index
        return body + b"x" * (LINE_LENGTH - 3 - len(body)) + b'"}\n'
    body = b"seq=%d t=21.50 h=40.1 p=1013.25 v=3.301 s=ok pad=" % index
    return body + b"x" * (LINE_LENGTH - 1 - len(body)) + b"\n"


def lines(count: int, fmt: str = "kv") -> bytes:
    """All ``count`` lines as one block."""
    return b"".join(line(index, fmt) for index in range(count))


def main() -> int:
    """Write the lines; blocking writes, so the pty's flow control holds us back, never drops."""
    fd, count, baud, fmt = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    os.set_blocking(fd, True)
    if baud == 0:
        view = memoryview(lines(count, fmt))
        while view:
            view = view[os.write(fd, view[:65536]) :]
        return 0
    per_line = LINE_LENGTH * 10 / baud  # 8N1: 10 bit times per byte
    start = time.monotonic()
    for index in range(count):
        delay = start + index * per_line - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        os.write(fd, line(index, fmt))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
