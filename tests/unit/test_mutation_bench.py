"""bench/mutation.py's own rules: which modules are shell, how a mutant is located, and the format of the
equivalent-mutant list in docs/testing.md that it matches survivors against."""

from __future__ import annotations

from pathlib import Path

from bench import mutation


def test_shell_modules_are_those_importing_io_libraries() -> None:
    shell = mutation.shell_modules(["controller", "common"])
    assert "controller/operator.py" in shell and "controller/caches.py" in shell
    assert not [path for path in shell if path.startswith("common/")], "common/ must stay pure"
    assert "controller/allocator.py" not in shell and "controller/reconcile.py" not in shell


def test_a_mutant_is_located_by_file_and_function() -> None:
    assert mutation.where("common.config.x__type_name__mutmut_2") == ("common/config.py", "_type_name")
    assert mutation.where("controller.ipset.xǁIntervalSetǁ_index__mutmut_15") == (
        "controller/ipset.py",
        "IntervalSet._index",
    )
    assert mutation.where("common.errors.xǁConfigErrorǁ__init____mutmut_5") == (
        "common/errors.py",
        "ConfigError.__init__",
    )


def test_equivalent_entries_are_read_from_the_docs(tmp_path: Path) -> None:
    docs = tmp_path / "testing.md"
    docs.write_text(
        "# Testing\n\n"
        "- `controller/ipset.py::IntervalSet._index` "
        "`return i if i >= 0 and self._ends[i] >= value else -2`: callers only test the sign.\n"
        "- not an entry\n"
    )
    assert mutation.equivalents(docs) == {
        (
            "controller/ipset.py",
            "IntervalSet._index",
            "return i if i >= 0 and self._ends[i] >= value else -2",
        ): "callers only test the sign."
    }


def test_a_mutant_is_named_by_its_added_lines_or_what_it_deletes() -> None:
    changed = "--- a.py\n+++ a.py\n@@ -1 +1 @@\n-    x = 1\n+    x = 2\n"
    assert mutation.mutated_lines(changed) == "x = 2"
    dropped = "--- a.py\n+++ a.py\n@@ -1,2 +1,1 @@\n     f(\n-        protocol=protocol,\n"
    assert mutation.mutated_lines(dropped) == "deleted: protocol=protocol,"
