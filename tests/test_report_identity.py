"""Reporting identity: enrollment by the workspace's Coder agent token, the shared-secret fallback,
and what `status` says about each (stand-ins of the drift server and the key provisioner).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.standins.drift_server import DriftStandin, run_drift_server
from tests.standins.provisioner import Standin, run_provisioner
from workspace_agent.paths import Paths
from workspace_agent.wire import ENROLL_PATH, REPORTS_PATH

# Left out of `scripts/test --fast`: each test runs the drift server and Coder stand-ins.
pytestmark = pytest.mark.slow

WORKSPACE = str(uuid.uuid4())
AGENT_TOKEN = str(uuid.uuid4())


@pytest.fixture
def prov() -> Iterator[Standin]:
    with run_provisioner(secret="prov-secret-Hq3mZ8") as standin:
        yield standin


def workspace_env(
    monkeypatch: pytest.MonkeyPatch,
    prov: Standin,
    drift: DriftStandin,
    *,
    secret: bool,
    agent_token: bool,
) -> None:
    env = {
        "CODER_WORKSPACE_ID": WORKSPACE,
        "CODER_WORKSPACE_NAME": "dev",
        "CODER_WORKSPACE_OWNER": "alice",
        "PROVISIONER_URL": prov.url,
        "PROVISIONER_SECRET": prov.secret,
        "DRIFT_SERVER_URL": drift.url,
    }
    if secret:
        env["DRIFT_ENROLLMENT_SECRET"] = drift.enrollment_secret
    if agent_token:
        env["CODER_AGENT_TOKEN"] = AGENT_TOKEN
    for name, value in env.items():
        monkeypatch.setenv(name, value)


def token_file(home: Path) -> dict[str, object]:
    return json.loads(Paths.for_home(home).drift_token_file.read_text())


def test_a_server_that_asks_coder_enrolls_by_agent_token_without_any_secret(
    cli: Callable[..., CliResult], home: Path, prov: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_drift_server(agent_tokens={AGENT_TOKEN: WORKSPACE}) as drift:
        workspace_env(monkeypatch, prov, drift, secret=False, agent_token=True)
        result = cli("bootstrap", "--report")
        assert result.code == 0, result.all
        assert "report: sent 1" in result.err
        enroll = drift.posts(ENROLL_PATH)[0]
        assert enroll.headers["coder-agent-token"] == AGENT_TOKEN
        assert "authorization" not in enroll.headers  # no shared secret was needed, none was sent
        assert token_file(home)["identity_mode"] == "coder-agent-token"
        assert [r["identity_mode"] for r in drift.received] == ["coder-agent-token"]
        # The token is the only bearer of reports; the agent token is never sent with them.
        assert all("coder-agent-token" not in p.headers for p in drift.posts(REPORTS_PATH))
        status = cli("status")
        assert "report identity: coder-agent-token (verified by Coder" in status.out
        assert AGENT_TOKEN not in result.all + status.all


def test_the_shared_secret_is_the_fallback_and_is_called_weaker(
    cli: Callable[..., CliResult], home: Path, prov: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_drift_server() as drift:  # a server that cannot ask Coder
        workspace_env(monkeypatch, prov, drift, secret=True, agent_token=True)
        result = cli("report", "--force")
        assert result.code == 0, result.all
        assert "shared enrollment secret, not its Coder agent token" in result.err
        assert token_file(home)["identity_mode"] == "enrollment-secret"
        assert [r["identity_mode"] for r in drift.received] == ["enrollment-secret"]
        status = cli("status")
        assert (
            "report identity: enrollment-secret (shared enrollment secret only: weaker"
            in status.out
        )


def test_an_agent_token_alone_at_a_secret_only_server_says_what_to_set(
    cli: Callable[..., CliResult], home: Path, prov: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_drift_server() as drift:
        workspace_env(monkeypatch, prov, drift, secret=False, agent_token=True)
        result = cli("report", "--force")
        assert result.code == 1
        assert "does not accept the Coder agent token alone (HTTP 401" in result.err
        assert "DRIFT_ENROLLMENT_SECRET" in result.err and AGENT_TOKEN not in result.all
        assert drift.received == []


def test_a_refused_identity_is_not_papered_over_with_the_secret(
    cli: Callable[..., CliResult], home: Path, prov: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_workspace = str(uuid.uuid4())
    with run_drift_server(agent_tokens={AGENT_TOKEN: other_workspace}) as drift:
        workspace_env(monkeypatch, prov, drift, secret=True, agent_token=True)
        result = cli("report", "--force")
        assert result.code == 1
        assert "refused this workspace's identity (HTTP 403" in result.err
        assert len(drift.posts(ENROLL_PATH)) == 1 and drift.received == []
        assert not Paths.for_home(home).drift_token_file.exists()


def test_neither_credential_says_which_to_set(
    cli: Callable[..., CliResult], home: Path, prov: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_drift_server() as drift:
        workspace_env(monkeypatch, prov, drift, secret=False, agent_token=False)
        result = cli("report", "--force")
        assert result.code == 1
        assert "set CODER_AGENT_TOKEN" in result.err and "or DRIFT_ENROLLMENT_SECRET" in result.err


def test_the_key_provisioning_identity_is_in_the_run_record_and_status(
    cli: Callable[..., CliResult], home: Path, prov: Standin, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_drift_server() as drift:
        workspace_env(monkeypatch, prov, drift, secret=True, agent_token=True)
        assert cli("bootstrap", "-q").code == 0
    sent = prov.key_requests()[-1].headers
    assert sent["coder-agent-token"] == AGENT_TOKEN
    record = json.loads(Paths.for_home(home).last_run_file.read_text())
    # The platform's provisioner (this stand-in) does not verify: the run says so.
    assert record["key"]["identity"] == "provisioner-secret"
    assert "(provisioner, shared secret only)" in cli("status").out
    assert AGENT_TOKEN not in Paths.for_home(home).last_run_file.read_text()
