"""Drift reports against a loopback stand-in of the drift server (and of the key provisioner).

Every test runs the real agent (in-process CLI or `report_outcome` on a real check of a temp
home) and asserts what the stand-in received, what is on disk and what was printed.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.standins.drift_server import DriftStandin, run_drift_server
from tests.standins.provisioner import Standin, run_provisioner
from workspace_agent import report as report_mod
from workspace_agent.config import load_config
from workspace_agent.paths import Paths
from workspace_agent.run import Outcome, execute
from workspace_agent.spool import Spool
from workspace_agent.wire import ENROLL_PATH, REPORTS_PATH

# Left out of `scripts/test --fast`: each test runs the drift server stand-in and real agent runs.
pytestmark = pytest.mark.slow

WORKSPACE = "ws-7f3a"
T0 = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)


class Clock:
    """An injectable wall clock that tests move by hand (forwards or backwards)."""

    def __init__(self, start: datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def move(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def drift() -> Iterator[DriftStandin]:
    with run_drift_server(heartbeat_interval_s=600) as server:
        yield server


@pytest.fixture
def prov() -> Iterator[Standin]:
    with run_provisioner(secret="prov-secret-Hq3mZ8") as standin:
        yield standin


@pytest.fixture
def workspace(home: Path, drift: DriftStandin, prov: Standin, monkeypatch: pytest.MonkeyPatch) -> Paths:
    """A workspace that gets its key from the provisioner stand-in and reports to the drift stand-in."""
    for name, value in {
        "CODER_WORKSPACE_ID": WORKSPACE,
        "CODER_WORKSPACE_NAME": "dev",
        "CODER_WORKSPACE_OWNER": "alice",
        "PROVISIONER_URL": prov.url,
        "PROVISIONER_SECRET": prov.secret,
        "DRIFT_SERVER_URL": drift.url,
        "DRIFT_ENROLLMENT_SECRET": drift.enrollment_secret,
    }.items():
        monkeypatch.setenv(name, value)
    return Paths.for_home(home)


def check_outcome() -> Outcome:
    """A real read-only check of the test's home, not yet recorded or reported."""
    env = dict(os.environ)
    return execute("check", load_config({}, env, {}), {}, environ=env, wait=0, record_run=False)


def bootstrapped(cli: Callable[..., CliResult]) -> CliResult:
    result = cli("bootstrap", "-q")
    assert result.code == 0, result.all
    return result


def stored_token(paths: Paths) -> str:
    return json.loads(paths.drift_token_file.read_text())["token"]


# -- enrollment and the token ---------------------------------------------------------------------


def test_first_report_enrolls_and_later_reports_reuse_the_token(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    first = cli("bootstrap", "--report")
    assert first.code == 0, first.all
    assert "report: sent 1; queue empty" in first.err
    second = cli("report", "--force")
    assert second.code == 0, second.all

    assert len(drift.enrollments) == 1
    assert drift.enrollments[0]["workspace"] == {"id": WORKSPACE, "name": "dev", "owner": "alice"}
    enroll_post = drift.posts(ENROLL_PATH)[0]
    assert enroll_post.headers["authorization"] == f"Bearer {drift.enrollment_secret}"
    token = stored_token(workspace)
    assert drift.tokens == {token: WORKSPACE}
    assert [p.headers["authorization"] for p in drift.posts(REPORTS_PATH)] == [f"Bearer {token}"] * 2
    assert [r["kind"] for r in drift.received] == ["bootstrap", "check"]
    assert stat.S_IMODE(workspace.drift_token_file.stat().st_mode) == 0o600


def test_a_token_file_readable_by_others_is_made_private_again(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    assert cli("bootstrap", "--report").code == 0
    workspace.drift_token_file.chmod(0o644)
    result = cli("report", "--force")
    assert result.code == 0, result.all
    assert "set back to 0600" in result.err
    assert stat.S_IMODE(workspace.drift_token_file.stat().st_mode) == 0o600
    assert len(drift.enrollments) == 1


def test_a_revoked_token_leads_to_one_new_enrollment(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    assert cli("bootstrap", "--report").code == 0
    old_token = stored_token(workspace)
    drift.revoke(WORKSPACE)
    result = cli("report", "--force")
    assert result.code == 0, result.all
    assert len(drift.enrollments) == 2
    assert stored_token(workspace) != old_token
    assert len(drift.received) == 2
    statuses = [p.headers["authorization"] for p in drift.posts(REPORTS_PATH)]
    assert statuses[1] == f"Bearer {old_token}" and statuses[2] == f"Bearer {stored_token(workspace)}"


def test_a_refused_enrollment_secret_keeps_the_report_and_says_what_to_fix(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrapped(cli)
    monkeypatch.setenv("DRIFT_ENROLLMENT_SECRET", "wrong-secret-Zx81")
    result = cli("report")
    assert result.code == 1
    assert "refused the enrollment secret (HTTP 401): check DRIFT_ENROLLMENT_SECRET" in result.err
    assert "1 report(s) wait in the queue" in result.err
    assert "wrong-secret-Zx81" not in result.all
    assert drift.received == [] and not workspace.drift_token_file.exists()

    monkeypatch.setenv("DRIFT_ENROLLMENT_SECRET", drift.enrollment_secret)
    assert cli("report").code == 0
    assert len(drift.received) == 1


# -- when to send -----------------------------------------------------------------------------------


def test_a_report_is_sent_on_change_and_not_again_while_nothing_changes(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin, home: Path
) -> None:
    assert cli("bootstrap", "--report", "-q").code == 0
    assert cli("check", "--report", "-q").code == 0  # corrected → compliant is a change
    assert cli("check", "--report", "-q").code == 0
    assert cli("check", "--report", "-q").code == 0
    assert [r["kind"] for r in drift.received] == ["bootstrap", "check"]

    (home / ".roo" / "rules" / "00-platform-enforcement.md").unlink()  # someone breaks a rule
    assert cli("check", "--report", "-q").code == 2
    assert cli("check", "--report", "-q").code == 2
    assert len(drift.received) == 3
    broken = {r["rule_id"]: r for r in drift.received[-1]["rules"]}["roo.rules"]
    assert broken == {"rule_id": "roo.rules", "target": "~/.roo/rules/00-platform-enforcement.md",
                      "state": "drift", "before": "absent", "after": "present", "message": None}
    assert drift.received[-1]["exit_code"] == 2


def test_a_heartbeat_goes_out_after_the_servers_interval_with_jitter(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    clock = Clock()
    draws: list[tuple[float, float]] = []

    def upper_end(low: float, high: float) -> float:
        draws.append((low, high))
        return high

    first = report_mod.report_outcome(check_outcome(), clock=clock, uniform=upper_end)
    assert first.sent and first.kind == "check"
    assert draws == [(0.9, 1.1)]
    state = json.loads(workspace.report_state_file.read_text())
    assert state["heartbeat_interval_s"] == 600  # what the server asked for at enrollment

    clock.move(600)  # past the plain interval, not past this report's jittered one (660 s)
    quiet = report_mod.report_outcome(check_outcome(), clock=clock, uniform=upper_end)
    assert quiet.report_id is None and quiet.sent == []
    clock.move(61)
    beat = report_mod.report_outcome(check_outcome(), clock=clock, uniform=upper_end)
    assert beat.kind == "heartbeat" and beat.sent == [beat.report_id]
    assert [r["kind"] for r in drift.received] == ["check", "heartbeat"]
    assert drift.received[0]["rules"] == drift.received[1]["rules"]


def test_a_clock_that_jumps_back_does_not_silence_the_heartbeat(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    clock = Clock()
    assert report_mod.report_outcome(check_outcome(), clock=clock).sent
    clock.move(-30 * 86400)  # NTP fixes a clock that was a month ahead
    beat = report_mod.report_outcome(check_outcome(), clock=clock)
    assert beat.kind == "heartbeat" and beat.sent
    clock.move(60)
    assert report_mod.report_outcome(check_outcome(), clock=clock).sent == []  # and then waits again


# -- when the server is away ------------------------------------------------------------------------


def test_reports_wait_in_a_bounded_queue_and_go_out_in_order_when_the_server_is_back(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    spool = Spool(workspace.spool_dir, max_files=3)
    clock = Clock()
    drift.stop()
    queued: list[str] = []
    dropped: list[str] = []
    for _ in range(5):
        delivery = report_mod.report_outcome(check_outcome(), force=True, clock=clock, spool=spool)
        assert delivery.report_id and not delivery.sent
        assert "is unreachable: cannot connect (Connection refused)" in (delivery.error or "")
        queued.append(delivery.report_id)
        dropped += delivery.dropped
        clock.move(-3600)  # and the clock keeps jumping back: the order must not care
    assert delivery.pending == 3
    assert dropped == ["the report queue was full (3 reports / 8192 KB): dropped the 1 oldest"] * 2

    drift.restart()
    back = report_mod.report_outcome(check_outcome(), clock=clock, spool=spool)
    assert back.report_id is None  # nothing new to say: only the queue goes out
    assert back.sent == queued[2:] and back.pending == 0 and back.error is None
    assert drift.report_ids() == queued[2:]
    assert len(drift.posts(REPORTS_PATH)) == 3  # each sent once: no duplicates
    assert spool.entries() == []


def test_a_server_error_keeps_the_report_for_later(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    drift.mode = "unavailable"
    result = cli("check", "--report", "-q")
    assert result.code == 0  # the check's own answer: reporting never changes it
    assert "the drift server answered HTTP 503: database unavailable; will try again later" in result.err
    assert Spool(workspace.spool_dir).size()[0] == 1
    drift.mode = "normal"
    again = cli("check", "--report", "-q")
    assert again.code == 0 and again.err == ""
    assert [r["kind"] for r in drift.received] == ["check"]
    assert Spool(workspace.spool_dir).size()[0] == 0


def test_a_report_the_server_calls_malformed_is_dropped_with_a_reason_and_the_next_goes_out(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    clock = Clock()
    drift.stop()
    first = report_mod.report_outcome(check_outcome(), force=True, clock=clock)
    drift.restart()
    drift.canned = [(413, {"detail": "report larger than 524288 bytes"})]
    assert report_mod.report_outcome(check_outcome(), clock=clock).sent == []  # enrolls, then 413
    second = report_mod.report_outcome(check_outcome(), force=True, clock=clock)
    assert drift.report_ids() == [second.report_id]
    state = json.loads(workspace.report_state_file.read_text())
    assert state["dropped_total"] == 1
    assert first.report_id not in drift.report_ids()


def test_dropping_is_printed_even_when_quiet(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    drift.canned = [(422, {"detail": "rules.0.state: not a valid state"})]
    result = cli("check", "--report", "-q")
    assert result.code == 0
    assert "dropped" in result.err and "HTTP 422: rules.0.state: not a valid state" in result.err
    assert Spool(workspace.spool_dir).size()[0] == 0


def test_a_damaged_queue_file_is_set_aside_and_the_others_are_delivered(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    clock = Clock()
    drift.stop()
    ids = [report_mod.report_outcome(check_outcome(), force=True, clock=clock).report_id for _ in range(3)]
    middle = Spool(workspace.spool_dir).entries()[1]
    middle.path.write_bytes(b"\x00\x00 half-written")
    drift.restart()
    delivery = report_mod.report_outcome(check_outcome(), clock=clock)
    assert drift.report_ids() == [ids[0], ids[2]]
    assert any("not readable (damaged file)" in n for n in delivery.notes)
    assert (middle.path.parent / (middle.path.name + ".corrupt")).exists()
    assert delivery.pending == 0


def test_a_queued_report_of_another_workspace_is_dropped_not_retried_forever(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrapped(cli)
    drift.stop()
    old = report_mod.report_outcome(check_outcome(), force=True)
    drift.restart()
    monkeypatch.setenv("CODER_WORKSPACE_ID", "ws-new")  # the home volume moved to another workspace
    delivery = report_mod.report_outcome(check_outcome(), force=True)
    assert delivery.dropped == [f"report {old.report_id} is for workspace '{WORKSPACE}', not this one; dropped"]
    assert drift.report_ids() == [delivery.report_id]
    assert drift.received[0]["workspace"]["id"] == "ws-new"


# -- configuration and output ---------------------------------------------------------------------


def test_report_without_a_server_says_what_to_set(cli: Callable[..., CliResult], keyed_env: str) -> None:
    result = cli("report")
    assert result.code == 1
    assert "cannot report: no drift server is configured; set DRIFT_SERVER_URL" in result.err
    assert "Traceback" not in result.all


def test_check_report_without_a_workspace_id_keeps_the_checks_exit_code(
    cli: Callable[..., CliResult], keyed_env: str, drift: DriftStandin, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIFT_SERVER_URL", drift.url)
    result = cli("check", "--report", "-q")
    assert result.code == 2  # drift: nothing was bootstrapped
    assert "cannot report: the workspace id is unknown; pass CODER_WORKSPACE_ID" in result.err
    assert drift.requests == []


def test_check_report_json_carries_the_delivery(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    result = cli("check", "--report", "--json")
    data = json.loads(result.out)
    assert data["report"]["sent"] == [data["report"]["report_id"]] == drift.report_ids()
    assert data["report"]["pending"] == 0 and data["exit_code"] == 0


def test_the_report_carries_identity_hashes_levels_and_times(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    assert cli("check", "--report").code == 0
    last_run = json.loads(workspace.last_run_file.read_text())
    sent = drift.received[0]
    assert sent["workspace"] == {"id": WORKSPACE, "name": "dev", "owner": "alice"}
    assert sent["desired_sha256"] == last_run["desired_sha256"]
    assert sent["prompt_sha256"] == last_run["prompt_sha256"]
    assert sent["enforcement_level"] == "standard" and sent["key_enforcement_level"] == "standard"
    assert sent["key_source"] == "stored"
    assert len(sent["report_id"]) == 32 and int(sent["report_id"], 16) >= 0
    assert datetime.fromisoformat(sent["started_at"]) <= datetime.fromisoformat(sent["finished_at"])
    assert [r["rule_id"] for r in sent["rules"]] == [r["rule_id"] for r in last_run["rules"]]
    assert all(not r["target"].startswith("/") for r in sent["rules"] if ".config" in r["target"])


def test_no_secret_reaches_any_output_queue_or_state_file(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin, prov: Standin, home: Path
) -> None:
    outputs = [cli("bootstrap", "--report"), cli("check", "--report", "--json"), cli("report", "--force", "--json")]
    drift.stop()  # leave something in the queue to scan
    outputs += [cli("report", "--force"), cli("status"), cli("status", "--json"), cli("status", "--short")]
    drift.restart()
    drift.revoke(WORKSPACE)
    outputs += [cli("report", "--force", "--json"), cli("check", "--report")]

    secrets = {
        "enrollment secret": drift.enrollment_secret,
        "provisioner secret": prov.secret,
        "virtual key": prov.keys[WORKSPACE],
        **{f"token {n}": t for n, t in enumerate([stored_token(workspace), *drift.tokens])},
        **{f"old token {n}": p.headers["authorization"].split()[1] for n, p in enumerate(drift.posts(REPORTS_PATH))},
    }
    scanned = {f"output {n}": r.all for n, r in enumerate(outputs)}
    for path in workspace.state_dir.rglob("*"):
        if path.is_file():
            scanned[str(path)] = path.read_text(errors="replace")
    scanned["reports sent"] = "\n".join(p.body for p in drift.posts(REPORTS_PATH))
    assert any("spool" in name for name in scanned) and len(drift.received) >= 4
    leaks = [(what, where) for what, secret in secrets.items() for where, text in scanned.items() if secret in text]
    assert leaks == []


# -- clock jumps and damaged state (issue 5) ---------------------------------------------------------


def test_a_clock_years_ahead_then_corrected_does_not_silence_reports_for_years(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    clock = Clock()
    assert report_mod.report_outcome(check_outcome(), clock=clock).sent
    clock.move(10 * 365 * 86400)  # a clock ten years ahead (a dead RTC battery, a bad NTP answer)
    ahead = report_mod.report_outcome(check_outcome(), clock=clock)
    assert ahead.kind == "heartbeat" and ahead.sent
    clock.move(-10 * 365 * 86400 + 60)  # and then corrected: the last report now lies in the future
    back = report_mod.report_outcome(check_outcome(), clock=clock)
    assert back.kind == "heartbeat" and back.sent, "must not wait ten years for the next heartbeat"
    clock.move(60)
    assert report_mod.report_outcome(check_outcome(), clock=clock).sent == []  # the normal cadence again
    clock.move(600 * 1.1 + 1)
    assert report_mod.report_outcome(check_outcome(), clock=clock).kind == "heartbeat"
    assert len(drift.received) == 4


def test_a_damaged_report_state_starts_afresh_and_loses_no_queued_report(
    cli: Callable[..., CliResult], workspace: Paths, drift: DriftStandin
) -> None:
    bootstrapped(cli)
    clock = Clock()
    drift.stop()
    queued = [report_mod.report_outcome(check_outcome(), force=True, clock=clock).report_id for _ in range(3)]
    workspace.report_state_file.write_text('{"last_fingerprint": "abc", "last_queued_at": ')  # torn
    drift.restart()
    delivery = report_mod.report_outcome(check_outcome(), clock=clock)
    assert any("was damaged; starting afresh" in note for note in delivery.notes)
    assert drift.report_ids()[:3] == queued and delivery.pending == 0 and delivery.error is None
    state = json.loads(workspace.report_state_file.read_text())
    assert state["last_sent_report_id"] == drift.report_ids()[-1]
