"""The spend benchmark, small: it seeds a fresh drift database, starts the real server process and
times every spend view: each answers without an error, and the table says what was measured."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

import pytest

from benchmarks.spend import PAGES, run_spend_suite, spend_table

# Starts the drift server as a process.
pytestmark = [pytest.mark.server, pytest.mark.slow]


def test_spend_suite_times_every_view(tmp_path: Path) -> None:
    result = run_spend_suite(sys.executable, tmp_path, keys=300, days=3, models=2, db="sqlite", requests=2)
    assert result["daily_rows"] == 300 * 3 * 2
    assert set(result["pages"]) >= {name for name, _ in PAGES}
    assert all(row["errors"] == 0 for row in result["pages"].values())
    assert result["targets"]["every spend view answers without an error"]
    with sqlite3.connect(tmp_path / "spend.db") as conn:
        assert conn.execute("SELECT count(DISTINCT token) FROM spend_daily").fetchone()[0] == 300
    text = "\n".join(spend_table(result))
    assert "300 keys × 3 days × 2 models = 1,800 daily rows" in text
