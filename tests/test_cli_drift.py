"""The drift commands as a developer and Coder meet them: help text, flags, a real process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.standins.drift_server import run_drift_server


def test_check_documents_its_exit_codes(cli: Callable[..., CliResult]) -> None:
    text = cli("check", "--help").out
    for line in ("0  compliant", "1  could not check at all", "2  drift found",
                 "4  some rules could not be checked", "6  drift found, and some rules could not be checked"):
        assert line in text
    assert "--report" in text


def test_report_help_names_its_settings_and_exit_codes(cli: Callable[..., CliResult]) -> None:
    text = cli("report", "--help").out
    assert "DRIFT_SERVER_URL" in text and "DRIFT_ENROLLMENT_SECRET" in text
    assert "0  delivered, or nothing new to send" in text


def test_report_is_refused_with_dry_run_or_demo(cli: Callable[..., CliResult]) -> None:
    result = cli("bootstrap", "--dry-run", "--report")
    assert result.code == 1
    assert "--report cannot be combined with --dry-run or --demo" in result.err


def test_check_exit_codes_match_what_check_finds(cli: Callable[..., CliResult], keyed_env: str, home: Path) -> None:
    assert cli("check", "-q").code == 2  # nothing bootstrapped yet: drift
    assert cli("bootstrap", "-q").code == 0
    assert cli("check", "-q").code == 0
    settings = home / ".local/share/code-server/User/settings.json"
    settings.unlink()
    settings.mkdir()  # a rule that cannot be checked: its file is a directory
    assert cli("check", "-q").code == 4  # a rule could not be checked; the others are compliant
    (home / ".roo" / "rules" / "00-platform-enforcement.md").unlink()
    assert cli("check", "-q").code == 6  # and now drift as well
    bad_policy = home / "bad.toml"
    bad_policy.write_text("[agent\n")
    assert cli("check", "--policy", str(bad_policy)).code == 1


@pytest.mark.slow
def test_a_scheduled_check_reports_from_a_real_process(
    cli_proc: Callable[..., CliResult], keyed_env: str, home: Path
) -> None:
    with run_drift_server() as server:
        env = {"DRIFT_SERVER_URL": server.url, "DRIFT_ENROLLMENT_SECRET": server.enrollment_secret,
               "CODER_WORKSPACE_ID": "ws-proc", "CODER_WORKSPACE_OWNER": "dana",
               "PROVISIONER_URL": server.url}  # no provisioner here: the key's level stays unknown
        assert cli_proc("bootstrap", "--report", "-q", env=env).code == 0
        scheduled = cli_proc("check", "--report", "-q", env=env)
        assert (scheduled.code, scheduled.out, scheduled.err) == (0, "", "")
        line = cli_proc("status", "--short", env=env)
        report = json.loads(cli_proc("report", "--json", env=env).out)
    assert [r["kind"] for r in server.received] == ["bootstrap", "check"]
    assert server.received[1]["key_enforcement_level"] is None
    assert line.out.startswith("compliant ") and line.out.endswith(" · key ok · reported just now\n")
    assert report["report_id"] is None and report["sent"] == [] and report["check_exit_code"] == 0
