"""The watch benchmark end to end on a real watcher process, short: the harness, not the numbers."""

from __future__ import annotations

import pytest

import sys
from pathlib import Path

from benchmarks import table
from benchmarks.watch import _percentile, run_watch_suite

# Left out of `scripts/test --fast`: runs the watch benchmark against a real watcher.
pytestmark = pytest.mark.slow


def test_percentile_picks_from_the_sorted_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert _percentile(values, 0.5) in (50.0, 51.0)
    assert _percentile(values, 0.99) == 99.0
    assert _percentile([7.0], 0.99) == 7.0


def test_the_watch_suite_measures_a_real_watcher(tmp_path: Path) -> None:
    result = run_watch_suite(Path(sys.executable), tmp_path / "watch", flips=6, idle_s=1.0)
    assert result["restored"] == 6 and result["failed"] == 0
    lat = result["latency_ms"]
    assert 0 < lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"] < 10_000
    assert result["exit_code_on_sigterm"] == 0
    assert result["corrections_delivered"] == 6  # one per flip, through the delivery child
    assert result["memory_mb"]["VmRSS"] > 5 and result["memory_mb"]["RssAnon"] > 1
    assert result["idle_cpu_ms"] >= 0
    assert len(result["targets"]) == 3
    text = "\n".join(table.watch_table(result) + table.targets(result))
    assert "flip → restored ms: p50" in text and "VmRSS" in text and "[" in text
