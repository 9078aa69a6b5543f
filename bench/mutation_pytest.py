"""pytest plugin for mutation runs (bench/mutation.py loads it): every hypothesis test runs at most
IRONLB_MUTATION_EXAMPLES examples (default 50), from the fixed seed the run passes.

A surviving mutant runs every test that reaches the mutated function, and the property tests take a minute at
their full example counts: capped, a full run over controller/ and common/ fits in an hour. The cap only ever
lowers the count, so a mutant killed here is killed by the real suite too.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

CAP = int(os.environ.get("IRONLB_MUTATION_EXAMPLES", "50"))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        test = getattr(item, "obj", None)
        # hypothesis reads this attribute each time the test runs.
        current = getattr(test, "_hypothesis_internal_use_settings", None)
        if isinstance(current, settings) and current.max_examples > CAP:
            test._hypothesis_internal_use_settings = settings(current, max_examples=CAP)  # type: ignore[union-attr]
