"""The agent benchmark suite, end to end on real processes (two runs: the harness, not the numbers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import table
from benchmarks.agent import (
    BASELINE,
    BOOTSTRAP,
    CHECK,
    PASS,
    PASTED,
    STATUS,
    SYSTEM_PASS,
    console_script,
    entry_point,
    run_agent_suite,
)


def test_console_script_uses_the_installed_one_only_when_it_runs_the_current_entry_point(tmp_path: Path) -> None:
    python = tmp_path / "bin" / "python3"
    python.parent.mkdir()
    python.symlink_to(sys.executable)
    stale = python.parent / "workspace-agent"
    stale.write_text("#!/usr/bin/python3\nfrom workspace_agent.cli import main\n")
    work = tmp_path / "work"
    script, info = console_script(python, work)
    assert script == work / "bin" / "workspace-agent" and "stale" in info["note"]
    module, func = entry_point().split(":")
    assert f"from {module} import {func}" in script.read_text()
    assert script.read_text().startswith(f"#!{python}\n")

    stale.write_text(f"#!/usr/bin/python3\nfrom {module} import {func}\n")
    script, info = console_script(python, work)
    assert script == stale and "note" not in info


@pytest.mark.slow
def test_suite_measures_every_command_and_bootstrap_changes_nothing(tmp_path: Path) -> None:
    result = run_agent_suite(2, Path(sys.executable), tmp_path)
    assert set(result["commands"]) - {SYSTEM_PASS} == {PASS, STATUS, CHECK, BOOTSTRAP, PASTED, BASELINE}
    assert result["commands"][BOOTSTRAP]["wall_vs_baseline"] > 0
    assert result["agent_home_unchanged_by_bootstrap_runs"] is True
    assert result["primed"]["key_source"] == "provisioner"
    assert result["primed"]["status_line"].startswith("compliant ")
    assert result["commands"][PASS]["wall_ratio"] == 1.0
    for row in result["commands"].values():
        assert row["wall_ms"]["n"] == 2 and row["wall_ms"]["min"] > 0 and row["cpu_ms"]["median"] > 0
        assert row["peak_rss_mb"]["max"] >= 1
    # bootstrap reads more and imports more than a status line
    assert result["commands"][BOOTSTRAP]["cpu_ms"]["median"] > result["commands"][STATUS]["cpu_ms"]["median"]
    text = table.render({"meta": {"started_at": "t", "cpus": 2, "commit": "c", "load_avg_start": [0, 0, 0]},
                         "agent": result})
    assert STATUS in text and "Targets:" in text and len(result["targets"]) == 4
