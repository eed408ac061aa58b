"""When the soak hurts the broker: restarts every 60-90 s, a freeze (SIGSTOP) now and then."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

RESTART_EVERY = (60.0, 90.0)
FREEZE_FOR = (3.0, 8.0)
QUIET_BEFORE_END = 30.0
"""No fault in the last this many seconds of emission, so the last sample under load is taken
with the daemon connected and settled."""


@dataclass(frozen=True)
class Fault:
    """One thing done to the broker ``at`` seconds after the daemon started."""

    at: float
    kind: Literal["restart", "freeze"]
    seconds: float = 0.0
    """How long a freeze lasts (0 for a restart)."""


def plan(
    emit_seconds: float, first_restart: float, freezes_from: float, rng: random.Random
) -> list[Fault]:
    """The faults for a soak whose devices emit for ``emit_seconds``, in time order.

    The first restart comes at ``first_restart`` (inside the warm-up, so that the reconnect path
    has run once before the baseline is taken). Of the gaps between restarts whose middle is
    after ``freezes_from``, every other one has a freeze in its middle.
    """
    last = emit_seconds - QUIET_BEFORE_END
    restarts = [first_restart]
    while (following := restarts[-1] + rng.uniform(*RESTART_EVERY)) <= last:
        restarts.append(following)
    faults = [Fault(at, "restart") for at in restarts]
    spans = zip(restarts, [*restarts[1:], last], strict=True)
    gaps = [(start, end) for start, end in spans if (start + end) / 2 >= freezes_from]
    for start, end in gaps[::2]:
        seconds = rng.uniform(*FREEZE_FOR)
        at = (start + end) / 2
        if at - start >= 10 and at + seconds <= end - 10:
            faults.append(Fault(at, "freeze", seconds))
    return sorted(faults, key=lambda fault: fault.at)
