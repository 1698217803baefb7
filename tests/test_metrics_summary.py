"""The latency summaries: reads answered on arrival (0 ms) are only counted, yet count,
min, avg and the quantiles come out as if every observation had been added."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from zkpy.server.metrics import Summary
from zkpy.server.stats import ServerStats

QS = (0.5, 0.9, 0.99)


def _reference(values: list[int]) -> tuple[int, int, int, int, list[int]]:
    """count, total, min, max and quantiles of a plain list (nearest rank below)."""
    v = sorted(values)
    n = len(v)
    return n, sum(v), v[0], v[-1], [v[min(n - 1, int(q * n))] for q in QS]


@given(st.lists(st.integers(min_value=0, max_value=50), min_size=1, max_size=1000))
def test_zero_latency_reads_count_as_observations(latencies: list[int]) -> None:
    s = Summary("readlatency", True)
    stats = ServerStats()
    for ms in latencies:
        if ms == 0:
            stats.record(0.0, s)  # answered as it arrived: counted, not added
        else:
            s.add(ms)
    count, total, lo, hi, qs = _reference(latencies)
    assert (s.count, s.total, s.min, s.max) == (count, total, lo, hi)
    assert s.avg() == total / count
    # the quantiles are those of the whole list while it fits in the ring
    assert s.quantiles(QS) == qs


def test_stats_record_zero_keeps_min_avg_max() -> None:
    s = Summary("readlatency", True)
    stats = ServerStats()
    s.add(7)
    stats.count, stats.total, stats.min, stats.max = 1, 7.0, 7.0, 7.0
    stats.record(0.0, s)
    assert (stats.count, stats.min, stats.max) == (2, 0.0, 7.0)
    assert stats.latency_line() == "0/3.5000/7"
