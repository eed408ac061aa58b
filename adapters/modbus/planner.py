"""The read planner: a device's points merged into the fewest read requests (pure).

A request reads one contiguous range of one kind (holding, input, coil, discrete). Points are
merged when the merged range stays within the protocol's limit (125 registers, 2000 bits) and the
device's own (``max_registers``, ``max_bits``), and when every hole between neighbours is at
most ``max_gap`` registers (``max_bit_gap`` bits): reading a few unused registers is far cheaper
than another round trip, but some devices refuse reads that touch unmapped addresses, so the
gap is configurable, and the poller can force a read to end before a given point or a point
to be read alone, after a device refused a merged read (see :attr:`Item.break_before` and
:attr:`Item.alone`).

Within one kind the points, sorted by address, split into runs; every constraint holds for any
part of a run that holds for the whole run, so taking the longest possible first run and
repeating (the greedy plan) gives the minimum number of requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from edged.adapters.modbus.codec import MAX_BITS_PER_READ, MAX_REGISTERS_PER_READ

KIND_ORDER = ("holding", "input", "coil", "discrete")
BIT_KINDS = frozenset({"coil", "discrete"})


@dataclass(frozen=True, slots=True)
class Item:
    """One point to read: ``size`` registers (or bits) from ``address`` in ``kind``.

    ``break_before=True`` makes this point start a new read; the poller sets it after a device
    refused a merged read, to split that read in two. ``alone=True`` makes it a read of its
    own, shared with no other point (one the device refuses to read).
    """

    name: str
    kind: str
    address: int
    size: int
    break_before: bool = False
    alone: bool = False

    @property
    def end(self) -> int:
        """The last address (inclusive)."""
        return self.address + self.size - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """The per-device limits on one read request."""

    max_registers: int = MAX_REGISTERS_PER_READ
    max_bits: int = MAX_BITS_PER_READ
    max_gap: int = 8
    max_bit_gap: int = 64

    def size_limit(self, kind: str) -> int:
        """The most registers or bits one read of ``kind`` may cover."""
        if kind in BIT_KINDS:
            return min(self.max_bits, MAX_BITS_PER_READ)
        return min(self.max_registers, MAX_REGISTERS_PER_READ)

    def gap_limit(self, kind: str) -> int:
        """The largest hole (registers or bits) bridged inside one read of ``kind``."""
        return self.max_bit_gap if kind in BIT_KINDS else self.max_gap


@dataclass(frozen=True, slots=True)
class Block:
    """One read request and the points it serves."""

    kind: str
    address: int
    count: int
    items: tuple[Item, ...]

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the points this read serves."""
        return tuple(item.name for item in self.items)


def can_join(run_start: int, last: Item, item: Item, limits: Limits) -> bool:
    """Whether ``item`` may extend the run that starts at ``run_start``.

    ``last`` is the run's member reaching furthest; ``item`` starts at or after every member.
    (A run holding an ``alone`` item holds nothing else, so that item is ``last``.)
    """
    if item.break_before or item.alone or last.alone:
        return False
    if max(last.end, item.end) - run_start + 1 > limits.size_limit(item.kind):
        return False
    return item.address - last.end - 1 <= limits.gap_limit(item.kind)


def _plan_kind(kind: str, items: list[Item], limits: Limits) -> list[Block]:
    items.sort(key=lambda item: (item.address, item.end))
    blocks: list[Block] = []
    run: list[Item] = []
    far = items[0]  # the member of ``run`` reaching furthest

    def close() -> None:
        blocks.append(Block(kind, run[0].address, far.end - run[0].address + 1, tuple(run)))

    for item in items:
        if run and can_join(run[0].address, far, item, limits):
            run.append(item)
            if item.end > far.end:
                far = item
            continue
        if run:
            close()
        run, far = [item], item
    close()
    return blocks


def plan_reads(items: Iterable[Item], limits: Limits) -> list[Block]:
    """The fewest read requests covering ``items``, ordered by kind, then address.

    Every item lies wholly inside exactly one block. An item larger than the size limit of its
    kind raises :class:`ValueError` (config validation prevents it).
    """
    by_kind: dict[str, list[Item]] = {}
    for item in items:
        if item.kind not in KIND_ORDER:
            raise ValueError(f"unknown kind {item.kind!r}")
        if item.size > limits.size_limit(item.kind):
            raise ValueError(f"{item.name}: {item.size} exceeds one read of {item.kind}")
        by_kind.setdefault(item.kind, []).append(item)
    blocks: list[Block] = []
    for kind in KIND_ORDER:
        if kind in by_kind:
            blocks.extend(_plan_kind(kind, by_kind[kind], limits))
    return blocks
