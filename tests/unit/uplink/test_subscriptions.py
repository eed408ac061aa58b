"""The subscription set: what to (un)subscribe after CONNACKs, SUBACKs and changes."""

from __future__ import annotations

import pytest

from edged.uplink.subscriptions import BATCH, Subscriptions, batches


def test_first_connect_subscribes_everything_and_suback_marks_held() -> None:
    subs = Subscriptions()
    subs.want([("a/#", 1), ("b/+", 0)])
    add, remove = subs.pending()
    assert (add, remove) == ([("a/#", 1), ("b/+", 0)], [])
    assert subs.pending() == ([], []), "requested filters are not requested twice"
    subs.acknowledged(add)
    assert subs.held == {"a/#": 1, "b/+": 0}


def test_unacknowledged_requests_are_repeated_after_a_reconnect_even_with_a_session() -> None:
    subs = Subscriptions()
    subs.want([("a/#", 1), ("b/#", 1)])
    add, _ = subs.pending()
    subs.acknowledged(add[:1])
    subs.connection_lost()
    assert subs.pending() == ([("b/#", 1)], [])


def test_session_loss_subscribes_all_again() -> None:
    subs = Subscriptions()
    subs.want([("a/#", 1)])
    subs.acknowledged(subs.pending()[0])
    subs.session_lost()
    assert subs.pending() == ([("a/#", 1)], [])


def test_changes_yield_new_changed_and_removed_filters() -> None:
    subs = Subscriptions()
    subs.want([("keep", 1), ("change", 0), ("drop", 1)])
    subs.acknowledged(subs.pending()[0])
    subs.want([("keep", 1), ("change", 1), ("new", 1), ("new", 0)])
    add, remove = subs.pending()
    assert sorted(add) == [("change", 1), ("new", 0)]
    assert remove == ["drop"]
    subs.acknowledged(add)
    assert subs.held == {"keep": 1, "change": 1, "new": 0}


@pytest.mark.parametrize("bad", [("", 1), ("a", 3), ("a\0b", 1)])
def test_invalid_filters_are_refused(bad: tuple[str, int]) -> None:
    with pytest.raises(ValueError):
        Subscriptions().want([bad])


def test_batches_split_evenly() -> None:
    items = list(range(BATCH * 2 + 1))
    assert [len(chunk) for chunk in batches(items)] == [BATCH, BATCH, 1]
    assert list(batches([])) == []
