"""bench/soak.py: failed requests and gaps per disruption window, from the client's request log."""

from __future__ import annotations

import json

from bench.soak import Request, Window, gaps, markdown_table, overall, parse_log, window_stats


def run(pattern: str, period: float = 0.1) -> list[Request]:
    """One request per character every `period` seconds from t=0: `.` answered, `x` failed (timeout)."""
    return [
        Request(t=i * period, ok=c == ".", seconds=0.0, error="" if c == "." else "timeout")
        for i, c in enumerate(pattern)
    ]


def test_no_failures_gap_is_the_period() -> None:
    stats = overall(run("....."))
    assert (stats.requests, stats.failed) == (5, 0)
    assert abs(stats.longest_gap - 0.1) < 1e-9


def test_a_failover_is_one_gap_from_the_last_to_the_next_success() -> None:
    requests = run("..xxxx...")
    assert [round(b - a, 3) for a, b in gaps(requests)] == [0.1, 0.5, 0.1, 0.1]
    stats = overall(requests)
    assert stats.failed == 4 and stats.errors == {"timeout": 4}
    assert abs(stats.longest_gap - 0.5) < 1e-9


def test_answers_that_come_late_are_a_gap_though_nothing_failed() -> None:
    # Requests started every 0.1 s; those from 0.2 s wait for ARP and are all answered at 0.9 s.
    requests = [
        Request(t=i * 0.1, ok=True, seconds=max(0.0, 0.9 - i * 0.1) if i >= 2 else 0.0) for i in range(12)
    ]
    stats = overall(requests)
    assert stats.failed == 0
    assert abs(stats.longest_gap - 0.8) < 1e-9
    assert abs(stats.slowest - 0.7) < 1e-9


def test_failures_at_the_edges_count_up_to_the_first_and_last_request() -> None:
    assert [round(b - a, 3) for a, b in gaps(run("xx..xx"))] == [0.2, 0.1, 0.2]
    assert gaps(run("xxx")) == [(0.0, 0.2)]
    assert gaps([]) == []


def test_a_window_counts_its_requests_and_every_gap_it_overlaps() -> None:
    requests = run("....xxx.........")
    # A kill at 0.45 s: the gap began at 0.3 s, before the window, and still counts.
    kill = window_stats(requests, Window("kill", 0.45, 0.9))
    assert (kill.requests, kill.failed) == (5, 2)
    assert abs(kill.longest_gap - 0.4) < 1e-9
    quiet = window_stats(requests, Window("quiet", 1.0, 1.5))
    assert (quiet.failed, round(quiet.longest_gap, 3)) == (0, 0.1)


def test_parse_log_sorts_by_start_and_names_the_pod() -> None:
    lines = [
        json.dumps({"t": 2.0, "ok": False, "seconds": 1.0, "error": "timeout", "reply": ""}),
        "",
        json.dumps(
            {"t": 1.0, "ok": True, "seconds": 0.01, "error": "", "reply": "nginx-abc 192.168.10.200:1"}
        ),
    ]
    first, second = parse_log(lines)
    assert (first.t, first.pod, second.pod, second.error) == (1.0, "nginx-abc", "", "timeout")


def test_markdown_table_has_a_row_per_window() -> None:
    table = markdown_table([overall(run("..x.."))])
    assert table.splitlines()[2] == "| whole run | 0.4 | 5 | 1 | 0.20 | 0.00 | timeout 1 |"
