"""The big settings.json benchmark: its file, and one real plan + bootstrap on a small size."""

from __future__ import annotations

import pytest

import sys
from pathlib import Path

from benchmarks.big_settings import big_settings_table, run_big_settings_suite, settings_text
from workspace_agent import jsonc

# Left out of `scripts/test --fast`: runs the 8 MB settings benchmark.
pytestmark = pytest.mark.slow


def test_settings_text_is_valid_jsonc_of_about_20_bytes_a_key() -> None:
    text = settings_text(1000)
    data = jsonc.loads(text)
    assert len(data) == 1001 and data["s.k0000999"] == 999
    assert 18 <= len(text) / 1000 <= 22


def test_the_suite_runs_plan_and_bootstrap_and_keeps_every_user_key(tmp_path: Path) -> None:
    result = run_big_settings_suite(sys.executable, tmp_path, (300, 600))
    assert [row["keys"] for row in result["rows"]] == [300, 600]
    assert all(row[c]["maxrss_mb"] > 5 and row[c]["cpu_s"] > 0 for row in result["rows"] for c in ("plan", "bootstrap"))
    merged = jsonc.loads((tmp_path / "k600/home/.local/share/code-server/User/settings.json").read_text())
    assert all(merged[f"s.k{n:07d}"] == n % 1000 for n in range(600))
    assert merged["chat.disableAIFeatures"] is True and merged["editor.fontSize"] == 14
    assert "Big user settings.json" in big_settings_table(result)[0]
