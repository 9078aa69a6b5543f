"""A set of integers stored as sorted, disjoint, non-adjacent closed intervals.

Used for a pool's free addresses: memory grows with the number of holes, not with the pool size, so a
2^20-address IPv6 pool costs the same as a /28 until it is fragmented. Membership and the lowest value are
found by bisection; the lists only shift (a memmove) on a split or a merge.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Iterator


class IntervalSet:
    __slots__ = ("_count", "_ends", "_starts")

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._count = 0

    @classmethod
    def from_ranges(cls, ranges: Iterable[tuple[int, int]], excluded: Iterable[int] = ()) -> IntervalSet:
        """The union of the closed ``ranges`` minus the ``excluded`` points, built in one sorted sweep."""
        result = cls()
        merged: list[list[int]] = []
        for first, last in sorted(ranges):
            if merged and first <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], last)
            else:
                merged.append([first, last])
        holes = sorted(set(excluded))
        hole = 0
        for first, last in merged:
            start = first
            while hole < len(holes) and holes[hole] < first:
                hole += 1
            while hole < len(holes) and holes[hole] <= last:
                if holes[hole] > start:
                    result._append(start, holes[hole] - 1)
                start = holes[hole] + 1
                hole += 1
            if start <= last:
                result._append(start, last)
        return result

    def _append(self, first: int, last: int) -> None:
        self._starts.append(first)
        self._ends.append(last)
        self._count += last - first + 1

    @property
    def count(self) -> int:
        """Number of values (not intervals). Not ``__len__``: len() stops at sys.maxsize, IPv6 pools don't."""
        return self._count

    @property
    def interval_count(self) -> int:
        return len(self._starts)

    def intervals(self) -> Iterator[tuple[int, int]]:
        return zip(self._starts, self._ends, strict=True)

    def _index(self, value: int) -> int:
        """Index of the interval holding ``value``, or -1."""
        i = bisect_right(self._starts, value) - 1
        return i if i >= 0 and self._ends[i] >= value else -1

    def __contains__(self, value: object) -> bool:
        return isinstance(value, int) and self._index(value) >= 0

    def first_interval(self) -> tuple[int, int] | None:
        return (self._starts[0], self._ends[0]) if self._starts else None

    def lowest(self) -> int | None:
        return self._starts[0] if self._starts else None

    def discard(self, value: int) -> bool:
        """Remove one value; False if it was not in the set."""
        i = self._index(value)
        if i < 0:
            return False
        first, last = self._starts[i], self._ends[i]
        if first == last:
            del self._starts[i]
            del self._ends[i]
        elif value == first:
            self._starts[i] = value + 1
        elif value == last:
            self._ends[i] = value - 1
        else:
            self._ends[i] = value - 1
            self._starts.insert(i + 1, value + 1)
            self._ends.insert(i + 1, last)
        self._count -= 1
        return True

    def discard_front(self, last: int) -> None:
        """Remove every value <= ``last`` from the first interval (which must hold them all)."""
        first, end = self._starts[0], self._ends[0]
        if not first <= last <= end:
            raise ValueError(f"{last} is not in the first interval [{first}, {end}]")
        if last == end:
            del self._starts[0]
            del self._ends[0]
        else:
            self._starts[0] = last + 1
        self._count -= last - first + 1

    def add(self, value: int) -> bool:
        """Insert one value, merging with adjacent intervals; False if it was already present."""
        i = bisect_right(self._starts, value) - 1
        if i >= 0 and self._ends[i] >= value:
            return False
        joins_left = i >= 0 and self._ends[i] == value - 1
        joins_right = i + 1 < len(self._starts) and self._starts[i + 1] == value + 1
        if joins_left and joins_right:
            self._ends[i] = self._ends[i + 1]
            del self._starts[i + 1]
            del self._ends[i + 1]
        elif joins_left:
            self._ends[i] = value
        elif joins_right:
            self._starts[i + 1] = value
        else:
            self._starts.insert(i + 1, value)
            self._ends.insert(i + 1, value)
        self._count += 1
        return True
