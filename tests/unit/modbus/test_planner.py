"""The read planner: property tests against an independent minimum, plus worked examples."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edged.adapters.modbus.planner import Block, Item, Limits, plan_reads

pytestmark = pytest.mark.modbus


def _feasible(run: Sequence[Item], limits: Limits) -> bool:
    """Whether one read may serve ``run``, judged by the holes inside it (unlike the planner)."""
    kind = run[0].kind
    if any(item.break_before for item in run[1:]):
        return False
    if len(run) > 1 and any(item.alone for item in run):
        return False
    start = min(item.address for item in run)
    end = max(item.end for item in run)
    if end - start + 1 > limits.size_limit(kind):
        return False
    covered: set[int] = set()
    for item in run:
        covered.update(range(item.address, item.end + 1))
    address = start
    while address <= end:
        if address in covered:
            address += 1
            continue
        hole_start = address
        while address not in covered:
            address += 1
        if address - hole_start > limits.gap_limit(kind):
            return False
    return True


def minimum_requests(items: Sequence[Item], limits: Limits) -> int:
    """The fewest reads, by dynamic programming over each kind's address-sorted points."""
    total = 0
    for kind in {item.kind for item in items}:
        ordered = sorted((i for i in items if i.kind == kind), key=lambda i: (i.address, i.end))
        best = [0] + [len(ordered) + 1] * len(ordered)
        for j in range(1, len(ordered) + 1):
            for i in range(j):
                if best[i] + 1 < best[j] and _feasible(ordered[i:j], limits):
                    best[j] = best[i] + 1
        total += best[-1]
    return total


@st.composite
def point_sets(draw: st.DrawFn) -> tuple[list[Item], Limits]:
    limits = Limits(
        max_registers=draw(st.integers(4, 125)),
        max_bits=draw(st.integers(8, 2000)),
        max_gap=draw(st.integers(0, 12)),
        max_bit_gap=draw(st.integers(0, 40)),
    )
    items: list[Item] = []
    for kind in draw(
        st.sets(st.sampled_from(["holding", "input", "coil", "discrete"]), min_size=1)
    ):
        address = draw(st.integers(0, 300))
        bits = kind in ("coil", "discrete")
        for n in range(draw(st.integers(1, 14))):
            size = 1 if bits else draw(st.sampled_from([1, 1, 2, 4, min(10, limits.max_registers)]))
            split = draw(st.integers(0, 5)) == 0
            if address + size - 1 > 65535:
                break
            alone = draw(st.integers(0, 7)) == 0
            items.append(Item(f"{kind}{n}", kind, address, size, split, alone))
            if not bits and size == 1 and draw(st.integers(0, 4)) == 0:  # a second bit field
                items.append(Item(f"{kind}{n}b", kind, address, 1, draw(st.booleans())))
            address += size + draw(st.sampled_from([0, 0, 1, 3, 8, 13, 40]))
    return items, limits


@settings(max_examples=300, deadline=None)
@given(case=point_sets())
def test_plans_are_valid_and_minimal(case: tuple[list[Item], Limits]) -> None:
    items, limits = case
    blocks = plan_reads(items, limits)
    served = [item for block in blocks for item in block.items]
    assert sorted(served, key=lambda i: i.name) == sorted(items, key=lambda i: i.name)
    for block in blocks:
        assert all(item.kind == block.kind for item in block.items)
        assert block.address == min(item.address for item in block.items)
        assert block.address + block.count - 1 == max(item.end for item in block.items)
        assert 1 <= block.count <= limits.size_limit(block.kind)
        assert block.address >= 0
        assert block.address + block.count - 1 <= 65535
        assert _feasible(block.items, limits)
    assert len(blocks) == minimum_requests(items, limits)


def _items(*spans: tuple[int, int], kind: str = "holding") -> list[Item]:
    return [Item(f"p{address}", kind, address, size) for address, size in spans]


def _ranges(blocks: list[Block]) -> list[tuple[str, int, int]]:
    return [(b.kind, b.address, b.count) for b in blocks]


def test_contiguous_points_merge_up_to_125_registers() -> None:
    items = _items(*((a, 2) for a in range(0, 300, 2)))
    assert _ranges(plan_reads(items, Limits())) == [
        ("holding", 0, 124),
        ("holding", 124, 124),
        ("holding", 248, 52),
    ]


def test_small_gaps_are_bridged_large_ones_are_not() -> None:
    items = _items((0, 1), (5, 2), (20, 1))
    assert _ranges(plan_reads(items, Limits(max_gap=4))) == [("holding", 0, 7), ("holding", 20, 1)]
    assert len(plan_reads(items, Limits(max_gap=3))) == 3
    assert _ranges(plan_reads(items, Limits(max_gap=13))) == [("holding", 0, 21)]
    assert _ranges(plan_reads(items, Limits(max_gap=0))) == [
        ("holding", 0, 1),
        ("holding", 5, 2),
        ("holding", 20, 1),
    ]


def test_device_block_limit() -> None:
    items = _items(*((a, 1) for a in range(40)))
    assert [b.count for b in plan_reads(items, Limits(max_registers=16))] == [16, 16, 8]


def test_kinds_never_mix_and_come_in_a_fixed_order() -> None:
    items = [
        Item("c", "coil", 0, 1),
        Item("i", "input", 0, 1),
        Item("h", "holding", 1, 1),
        Item("d", "discrete", 0, 1),
    ]
    assert [b.kind for b in plan_reads(items, Limits())] == ["holding", "input", "coil", "discrete"]


def test_bits_merge_up_to_2000_and_bridge_their_own_gap() -> None:
    items = _items(*((a, 1) for a in range(0, 4000, 2)), kind="coil")
    blocks = plan_reads(items, Limits(max_bit_gap=1))
    assert [b.count for b in blocks] == [1999, 1999]


def test_bit_fields_of_one_register_share_a_read() -> None:
    items = [
        Item("lo", "holding", 10, 1),
        Item("hi", "holding", 10, 1),
        Item("x", "holding", 11, 2),
    ]
    (block,) = plan_reads(items, Limits())
    assert (block.address, block.count, set(block.names)) == (10, 3, {"lo", "hi", "x"})


def test_learned_splits() -> None:
    items = [
        Item("a", "holding", 0, 1),
        Item("b", "holding", 1, 1),
        Item("c", "holding", 2, 1, break_before=True),
        Item("d", "holding", 3, 1),
        Item("e", "holding", 9, 1, break_before=True),
    ]
    assert _ranges(plan_reads(items, Limits())) == [
        ("holding", 0, 2),
        ("holding", 2, 2),
        ("holding", 9, 1),
    ]


def test_a_point_read_alone_shares_its_read_with_no_neighbour() -> None:
    items = [
        Item("a", "holding", 0, 1),
        Item("b", "holding", 1, 1),
        Item("c", "holding", 2, 1, alone=True),
        Item("d", "holding", 3, 1),
        Item("e", "holding", 4, 1),
    ]
    assert _ranges(plan_reads(items, Limits())) == [
        ("holding", 0, 2),
        ("holding", 2, 1),
        ("holding", 3, 2),
    ]


def test_the_benchmark_layout_needs_16_reads() -> None:
    # 1000 registers on the even addresses 0..1998: one read of 125 registers holds at most 63
    # of them, so 16 reads is the least possible.
    items = _items(*((a, 1) for a in range(0, 2000, 2)))
    blocks = plan_reads(items, Limits())
    assert len(blocks) == 16
    assert all(block.count <= 125 for block in blocks)


def test_oversized_point_is_refused() -> None:
    with pytest.raises(ValueError, match="exceeds"):
        plan_reads(_items((0, 20)), Limits(max_registers=10))
    with pytest.raises(ValueError, match="unknown kind"):
        plan_reads([Item("x", "weird", 0, 1)], Limits())
