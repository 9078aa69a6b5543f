"""IntervalSet against a plain Python set: same membership, count and lowest value, compact intervals."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from controller.ipset import IntervalSet


def test_from_ranges_merges_and_excludes() -> None:
    s = IntervalSet.from_ranges([(10, 19), (0, 4), (5, 7), (30, 30)], excluded=[0, 6, 15, 30, 99])
    assert list(s.intervals()) == [(1, 5), (7, 7), (10, 14), (16, 19)]
    assert s.count == 5 + 1 + 5 + 4
    assert s.lowest() == 1 and 15 not in s and 16 in s and "x" not in s


def test_add_merges_and_discard_splits() -> None:
    s = IntervalSet.from_ranges([(0, 9)])
    assert s.discard(5) and not s.discard(5)
    assert list(s.intervals()) == [(0, 4), (6, 9)]
    assert s.add(5) and not s.add(5)
    assert list(s.intervals()) == [(0, 9)]
    s.discard_front(3)
    assert list(s.intervals()) == [(4, 9)] and s.count == 6
    s.discard_front(9)
    assert s.first_interval() is None and s.lowest() is None and s.count == 0


def test_huge_range_is_one_interval() -> None:
    s = IntervalSet.from_ranges([(0, 2**128 - 1)])
    assert s.count == 2**128 and s.interval_count == 1
    for value in range(1000):
        s.discard(value)
    assert s.interval_count == 1 and s.lowest() == 1000


def test_membership_at_the_edges_of_the_first_interval() -> None:
    s = IntervalSet.from_ranges([(0, 5), (9, 9)])
    assert 0 in s and 5 in s and 9 in s
    assert 6 not in s and -1 not in s and 10 not in s


def test_discard_front_refuses_a_value_outside_the_first_interval() -> None:
    s = IntervalSet.from_ranges([(3, 5), (9, 9)])
    with pytest.raises(ValueError) as info:
        s.discard_front(9)
    assert str(info.value) == "9 is not in the first interval [3, 5]"
    assert list(s.intervals()) == [(3, 5), (9, 9)] and s.count == 4


operations = st.lists(
    st.tuples(st.sampled_from(["add", "discard", "front"]), st.integers(min_value=0, max_value=60)),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(
    ranges=st.lists(st.tuples(st.integers(0, 50), st.integers(0, 10)), max_size=5),
    excluded=st.lists(st.integers(0, 60), max_size=10),
    ops=operations,
)
def test_matches_a_plain_set(
    ranges: list[tuple[int, int]], excluded: list[int], ops: list[tuple[str, int]]
) -> None:
    closed = [(start, start + length) for start, length in ranges]
    s = IntervalSet.from_ranges(closed, excluded)
    model = {v for start, end in closed for v in range(start, end + 1)} - set(excluded)
    for op, value in ops:
        if op == "add":
            assert s.add(value) == (value not in model)
            model.add(value)
        elif op == "discard":
            assert s.discard(value) == (value in model)
            model.discard(value)
        elif s.first_interval() is not None:
            first, last = s.first_interval()  # type: ignore[misc]
            cut = min(last, first + value % 3)
            s.discard_front(cut)
            model -= set(range(first, cut + 1))
        intervals = list(s.intervals())
        assert s.count == len(model)
        assert s.lowest() == (min(model) if model else None)
        assert {v for a, b in intervals for v in range(a, b + 1)} == model
        # Canonical: sorted, disjoint and never adjacent (so memory tracks the number of holes).
        assert all(b1 + 1 < a2 for (_, b1), (a2, _) in itertools.pairwise(intervals))
        assert all(a <= b for a, b in intervals)
