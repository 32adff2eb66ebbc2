"""`status`: the one-line Coder metadata form, the long form and JSON, from the records of real runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import REPO, CliResult
from tests.standins.drift_server import DriftStandin, run_drift_server
from tests.standins.provisioner import Standin, run_provisioner
from workspace_agent import status
from workspace_agent.paths import Paths
from workspace_agent.status import NEVER_CHECKED, ago, gather, short_line


@pytest.fixture
def drift() -> Iterator[DriftStandin]:
    with run_drift_server() as server:
        yield server


@pytest.fixture
def reporting(home: Path, drift: DriftStandin, monkeypatch: pytest.MonkeyPatch) -> Iterator[Standin]:
    with run_provisioner() as prov:
        for name, value in {
            "CODER_WORKSPACE_ID": "ws-status",
            "CODER_WORKSPACE_OWNER": "bob",
            "PROVISIONER_URL": prov.url,
            "PROVISIONER_SECRET": prov.secret,
            "DRIFT_SERVER_URL": drift.url,
            "DRIFT_ENROLLMENT_SECRET": drift.enrollment_secret,
        }.items():
            monkeypatch.setenv(name, value)
        yield prov


def counts(home: Path) -> dict[str, int]:
    return json.loads(Paths.for_home(home).last_run_file.read_text())["counts"]


def test_never_checked(cli: Callable[..., CliResult]) -> None:
    result = cli("status", "--short")
    assert (result.code, result.out) == (0, NEVER_CHECKED + "\n")


def test_compliant_after_bootstrap_and_a_reported_check(
    cli: Callable[..., CliResult], reporting: Standin, home: Path
) -> None:
    assert cli("bootstrap", "-q").code == 0
    assert cli("check", "--report", "-q").code == 0
    total = counts(home)["total"]
    assert cli("status", "--short").out == f"compliant {total}/{total} · key ok · reported just now\n"


def test_drift_is_counted_and_not_reported_without_a_server(
    cli: Callable[..., CliResult], keyed_env: str, home: Path
) -> None:
    assert cli("bootstrap", "-q").code == 0
    (home / ".config" / "opencode" / "enforcement.md").write_text("be nice\n")
    (home / ".roo" / "rules" / "00-platform-enforcement.md").unlink()
    assert cli("check", "-q").code == 2
    total = counts(home)["total"]
    assert cli("status", "--short").out == f"drift 2/{total} · key ok · not reported\n"


def test_reports_waiting_in_the_queue_are_shown(
    cli: Callable[..., CliResult], reporting: Standin, drift: DriftStandin, home: Path
) -> None:
    assert cli("bootstrap", "--report", "-q").code == 0
    drift.stop()
    (home / ".roo" / "rules" / "00-platform-enforcement.md").unlink()
    assert cli("check", "--report", "-q").code == 2
    assert cli("bootstrap", "--report", "-q").code == 0
    total = counts(home)["total"]
    assert cli("status", "--short").out == f"compliant {total}/{total} · key ok · reported just now (queue 2)\n"
    long = cli("status").out
    assert "2 waiting in the queue" in long and "is unreachable" in long


def test_before_bootstrap_there_is_no_key(cli: Callable[..., CliResult], home: Path) -> None:
    assert cli("check", "-q").code in (2, 4, 6)
    line = cli("status", "--short").out
    assert " · no key · not reported" in line and line.startswith(("drift ", "error "))


def test_a_key_with_another_enforcement_level_is_named(
    cli: Callable[..., CliResult], reporting: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli("bootstrap", "--report", "-q").code == 0  # the key is made with "standard"
    monkeypatch.setenv("ENFORCEMENT_LEVEL", "design-first")
    assert cli("bootstrap", "--report", "-q").code == 0  # same key, still "standard" (anti-downgrade)
    line = cli("status", "--short").out
    assert "drift 1/" in line and "key level standard≠design-first" in line
    long = cli("status").out
    assert "key.enforcement-level" in long and "standard → design-first" in long


def test_a_damaged_record_gives_a_sentence(cli: Callable[..., CliResult], home: Path) -> None:
    record = Paths.for_home(home).last_run_file
    record.parent.mkdir(parents=True)
    record.write_text('{"counts": ')
    result = cli("status", "--short")
    assert result.code == 0
    assert result.out == f"status unknown: {record} is damaged; run workspace-agent check\n"


def test_json_form(cli: Callable[..., CliResult], keyed_env: str, home: Path) -> None:
    assert cli("bootstrap", "-q").code == 0
    data = json.loads(cli("status", "--json").out)
    assert data["last_run"]["command"] == "bootstrap"
    assert data["last_run"]["counts"] == counts(home)
    assert data["report"]["queued"] == 0 and data["report"]["enrolled"] is False
    assert keyed_env not in json.dumps(data)


def test_times_and_stale_checks_read_naturally(tmp_path: Path) -> None:
    now = datetime(2031, 1, 1, 12, 0, tzinfo=UTC)

    def at(**delta: float) -> str:
        return (now - timedelta(**delta)).isoformat()

    assert [ago(at(seconds=2), now), ago(at(seconds=42), now), ago(at(minutes=2, seconds=5), now),
            ago(at(hours=1, minutes=59), now), ago(at(days=3), now), ago(at(minutes=-5), now), ago("bad", now)] == [
        "just now", "42s ago", "2m ago", "1h ago", "3d ago", "just now", None]
    data = {
        "last_run": {"counts": {"total": 14, "compliant": 11, "drift": 3, "error": 0}, "key": {"masked": "sk-…abcd"},
                     "finished_at": at(hours=5)},
        "report": {"last_sent_at": at(hours=1, minutes=3), "queued": 2},
    }
    assert short_line(data, now) == "drift 3/14 · key ok · reported 1h ago (queue 2) · checked 5h ago"
    data["last_run"]["counts"] = {"total": 14, "compliant": 12, "drift": 1, "error": 1}
    data["last_run"]["finished_at"] = at(minutes=1)
    assert short_line(data, now).startswith("drift 1/14, 1 error · ")
    data["last_run"]["counts"] = {"total": 14, "compliant": 12, "corrected": 0, "drift": 0, "error": 2}
    assert short_line(data, now).startswith("error 2/14 · ")


def test_home_option_and_xdg_state_home(cli: Callable[..., CliResult], keyed_env: str, home: Path,
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert cli("bootstrap", "-q").code == 0
    assert (tmp_path / "state" / "workspace-agent" / "last-run.json").exists()
    assert cli("status", "--short").out.startswith("compliant ")
    other = tmp_path / "other-home"
    other.mkdir()
    monkeypatch.delenv("XDG_STATE_HOME")
    assert cli("status", "--short", "--home", str(other)).out == NEVER_CHECKED + "\n"


def _run_entry(args: list[str], code: str = "") -> subprocess.CompletedProcess[str]:
    program = "import sys; from workspace_agent.entry import main; rc = main(sys.argv[1:])\n" + code + "\nsys.exit(rc)"
    return subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, cwd=REPO, check=False,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)


HEAVY = "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'click', 'pydantic', 'httpx', 'tomlkit', 'json5', 'psutil'}))"


@pytest.mark.slow
def test_the_fast_path_imports_nothing_heavy(cli: Callable[..., CliResult], keyed_env: str) -> None:
    assert cli("bootstrap", "-q").code == 0
    for form in (["--short"], ["--json"], []):
        proc = _run_entry(["status", *form], HEAVY)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.rstrip().endswith("HEAVY []"), proc.stdout
    in_process = cli("status", "--short").out  # the click command gives the same line
    assert _run_entry(["status", "--short"]).stdout == in_process


@pytest.mark.slow
def test_anything_the_fast_path_does_not_know_goes_to_the_full_cli() -> None:
    proc = _run_entry(["status", "--help"], HEAVY)
    assert proc.returncode == 0
    assert "Usage: workspace-agent status" in proc.stdout and "HEAVY ['click'" in proc.stdout
    bad = _run_entry(["status", "--shrt"])
    assert bad.returncode == 2 and "Did you mean '--short'?" in bad.stderr


def test_gather_survives_an_unreadable_queue_directory(home: Path) -> None:
    paths = Paths.for_home(home)
    paths.report_dir.mkdir(parents=True)
    paths.spool_dir.write_text("not a directory")
    data = gather(paths)
    assert data["report"]["queued"] == 0
    assert status.render(paths, "short") == NEVER_CHECKED + "\n"


def test_the_lean_short_line_equals_the_full_one(home: Path, keyed_env: str, cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """short_from_files reads the files itself (no dataclasses): it must say what gather() says."""
    from datetime import UTC, datetime

    from workspace_agent.status import short_from_files, short_line

    now = datetime(2031, 1, 1, tzinfo=UTC)
    paths = Paths.for_home(home)

    def same() -> str:
        lean = short_from_files(str(home), os.environ, now)
        assert lean == short_line(gather(paths), now)
        return lean

    assert same() == NEVER_CHECKED
    assert cli("bootstrap", "-q").code == 0
    assert same().startswith("compliant ")
    paths.spool_dir.mkdir(parents=True)
    for name in ("000000000001.json", "000000000002.json", "00000000000x.json", "000000000003.json.tmp"):
        (paths.spool_dir / name).write_text("{}")
    (paths.spool_dir / "000000000004.json").mkdir()
    paths.report_state_file.write_text('{"last_sent_at": "2030-12-31T23:58:00+00:00"}')
    assert "reported 2m ago (queue 2)" in same()
    for damaged in ('{"last_sent_at": 7}', "not json", "[]"):
        paths.report_state_file.write_text(damaged)
        assert "not reported (queue 2)" in same()
    paths.last_run_file.write_text("{}")
    assert same().startswith("status unknown: ")
    monkeypatch.setenv("XDG_STATE_HOME", str(home / "elsewhere"))
    paths = Paths.for_home(home)
    assert same() == NEVER_CHECKED
