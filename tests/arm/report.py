"""Print each architecture's figures next to the native amd64 ones, with the ratio.

Runs on the host (any python3 >= 3.11): ``python3 tests/arm/report.py AMD64.json OTHER.json...``,
each file written by ``python3 -m arm.figures --json`` inside its chroot. The ratio is what
counts: the emulated absolute figures say little about a real Raspberry Pi.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROWS: list[tuple[str, Callable[[dict[str, Any]], float], str, bool, str]] = [
    ("calibration: pure-Python loop", lambda f: f["python_loop_s"], "{:.3f} s", False, "as long"),
    ("calibration: 200k clock reads", lambda f: f["clock_reads_s"], "{:.3f} s", False, "as long"),
    ("start to READY, 100 devices", lambda f: f["ready_s"], "{:.2f} s", False, "as long"),
    ("RSS, 100 devices", lambda f: f["rss_mb"], "{:.1f} MiB", False, "as much"),
    (
        "  RSS less an idle python3",
        lambda f: f["rss_mb"] - f["idle_python_rss_mb"],
        "{:.1f} MiB",
        False,
        "as much",
    ),
    ("events/s, QoS 1, outbox", lambda f: f["events_per_s"], "{:.0f}", True, "fewer"),
]
"""(label, value, format, higher is better, the ratio's word)."""


def ratio(value: float, reference: float, higher_is_better: bool, word: str) -> str:
    """How many times the reference, put so that it cannot be misread: "6.1x as long",
    "5.3x fewer"."""
    if value <= 0 or reference <= 0:
        return "n/a"
    times = reference / value if higher_is_better else value / reference
    return f"{times:.1f}x {word}"


def table(reference: dict[str, Any], others: list[dict[str, Any]]) -> list[str]:
    """The lines of the comparison table."""
    header = ["figure", f"amd64 ({reference['machine']})"]
    header += [f"{f['machine']} (ratio to amd64)" for f in others]
    rows = [header]
    for label, get, fmt, higher, word in ROWS:
        try:
            ref = get(reference)
            [get(f) for f in others]
        except KeyError:  # figures from an older figures.py
            continue
        row = [label, fmt.format(ref)]
        row += [f"{fmt.format(get(f))} ({ratio(get(f), ref, higher, word)})" for f in others]
        rows.append(row)
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: report.py AMD64.json [OTHER.json ...]", file=sys.stderr)
        return 64
    reference, *others = (json.loads(Path(path).read_text()) for path in argv[1:])
    print("\n".join(table(reference, others)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
