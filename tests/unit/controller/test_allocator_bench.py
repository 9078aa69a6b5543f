"""The allocator benchmark runs end to end (tiny sizes); its docs update touches only its own section."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import allocator_bench


def test_small_run_renders_all_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert allocator_bench.main(["--allocations", "1500", "--baseline-allocations", "300"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("## Allocator\n")
    assert "| ironlb interval allocator (Allocator.assign) | 1,500 |" in out
    assert "| first-free linear scan (MetalLB's method) | 300 |" in out
    assert "| 1,499 |" in out and "| fd00::/108 (IPv6) | 1,048,576 |" in out


def test_linear_scan_baseline_is_first_free() -> None:
    pool = allocator_bench.LinearScanPool(10, 13)
    assert [pool.allocate() for _ in range(3)] == [10, 11, 12]
    pool.used.discard(11)
    assert pool.allocate() == 11
    assert pool.allocate() == 13
    with pytest.raises(RuntimeError):
        pool.allocate()


def test_update_docs_replaces_only_its_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        "# Benchmarks\n\n## Other\n\nkeep me\n\n## Allocator\n\nold numbers\n\n## Later\n\nkeep too\n"
    )
    monkeypatch.setattr(allocator_bench, "DOCS", docs)
    allocator_bench.update_docs("## Allocator\n\nnew numbers\n")
    assert docs.read_text() == (
        "# Benchmarks\n\n## Other\n\nkeep me\n\n## Allocator\n\nnew numbers\n\n## Later\n\nkeep too\n"
    )
    fresh = tmp_path / "missing.md"
    monkeypatch.setattr(allocator_bench, "DOCS", fresh)
    allocator_bench.update_docs("## Allocator\n\nx\n")
    assert fresh.read_text() == "# Benchmarks\n\n## Allocator\n\nx\n\n"
