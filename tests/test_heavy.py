"""The test harness's promise about real components: in CI a missing one fails the run with its
name, elsewhere it is a listed skip; and the run closes naming what it exercised."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import heavy

REPO = Path(__file__).resolve().parent.parent

PROBE = '''
from tests.heavy import require

def test_needs_a_component():
    require("WA_NOT_INSTALLED_ANYWHERE", "the frobnicator 9.9")
'''


def _run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["WA_TEST_CACHE"] = str(tmp_path / "empty-cache")  # no env.sh: nothing is installed
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--rootdir", str(REPO),
         "-c", str(REPO / "pyproject.toml"), str(probe)],
        capture_output=True, text=True, cwd=REPO, env=env, timeout=120, check=False,
    )


@pytest.mark.slow
def test_in_ci_a_missing_component_fails_the_run_with_its_name(tmp_path: Path) -> None:
    done = _run_probe(tmp_path, "true")
    assert done.returncode == 1, done.stdout
    assert "the frobnicator 9.9 is not available" in done.stdout
    assert "CI=true: a missing real component fails the run" in done.stdout
    assert "1 failed" in done.stdout


@pytest.mark.slow
def test_elsewhere_a_missing_component_is_a_skip_listed_with_its_reason(tmp_path: Path) -> None:
    done = _run_probe(tmp_path, None)
    assert done.returncode == 0, done.stdout
    assert "SKIPPED" in done.stdout and "the frobnicator 9.9 is not available" in done.stdout


def test_the_closing_line_names_each_exercised_component_and_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heavy, "EXERCISED", {"WA_OPENCODE", "WA_CODE_SERVER"})
    monkeypatch.setenv("WA_OPENCODE_VERSION", "1.18.33")
    monkeypatch.setenv("WA_CODE_SERVER_VERSION", "4.139.1")
    assert heavy.exercised_line() == "real components exercised: code-server 4.139.1, opencode 1.18.33"


def test_env_file_lines_are_read_without_a_shell() -> None:
    text = "# comment\nexport WA_X='/a b/c'\nexport WA_X_VERSION=1.2\nexport $(rm -rf /)=x\nnot an export\n"
    assert heavy.parse_env_file(text) == {"WA_X": "/a b/c", "WA_X_VERSION": "1.2"}
