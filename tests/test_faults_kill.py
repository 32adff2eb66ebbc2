"""SIGKILL during `bootstrap`: every managed file is the old or the new version, never torn, and
the next run converges (the harness and how it picks kill points: tests/faults/kill.py).

CI runs WA_KILL_TRIALS (default 40) trials with a fresh seed each time (printed on failure;
WA_KILL_SEED reproduces a run). The long documented mode:
`PYTHONPATH=. python -m tests.faults.kill --trials 300`.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.faults.kill import run_trials
from tests.faults.workspace import Workspace


@pytest.mark.slow
def test_sigkill_at_spread_points_never_tears_a_file_and_the_next_run_converges(tmp_path: Path) -> None:
    trials = int(os.environ.get("WA_KILL_TRIALS", "40"))
    seed = int(os.environ.get("WA_KILL_SEED", str(random.randrange(1_000_000))))
    summary, _trials = run_trials(tmp_path / "kill", trials, seed, Workspace.prepare)
    report = summary.text()
    print(report)
    assert summary.problems == [], f"seed {seed}:\n{report}"
    assert summary.killed == trials, report
    if summary.method == "strace":
        assert summary.killed_as_planned >= 0.9 * trials, f"the harness did not kill where it planned:\n{report}"
        assert all(summary.by_window_decile), f"kill points must cover the whole window:\n{report}"
        assert any(label.startswith("writing ") for label in summary.by_label), report
        assert max(summary.files_new_histogram) >= 5 and 0 in summary.files_new_histogram, report
