"""Drift server enrollment by the workspace's Coder agent token (docs/identity.md), against a
loopback stand-in of Coder's agent API: verified identity, refusals, the shared-secret fallback,
and the admin page's warning about it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.server.conftest import ADMIN, SECRET, Api, make_report, rule
from tests.standins.coder_agent_api import CoderStandin, Workspace, run_coder
from workspace_agent import wire

# Left out of `scripts/test --fast`: each test builds a drift server and a Coder stand-in.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture
def db_url(tmp_path: Path) -> str:  # identity logic is the same on both databases
    return f"sqlite:///{tmp_path / 'drift.db'}"


@pytest.fixture
def coder() -> Iterator[CoderStandin]:
    with run_coder() as standin:
        yield standin


@pytest.fixture
async def api(api_factory: Callable[..., Any], coder: CoderStandin) -> AsyncIterator[Api]:
    async with api_factory(
        coder_url=coder.url, coder_api_token=coder.api_token, coder_identity_cache_s=0
    ) as a:
        yield a


async def enroll(
    api: Api,
    workspace_id: str,
    *,
    agent_token: str | None = None,
    secret: bool = False,
    name: str = "claimed-name",
    owner: str = "claimed-owner",
) -> httpx.Response:
    headers = {}
    if agent_token:
        headers["Coder-Agent-Token"] = agent_token
    if secret:
        headers["Authorization"] = f"Bearer {SECRET}"
    return await api.client.post(
        wire.ENROLL_PATH,
        headers=headers,
        json={
            "workspace": {"id": workspace_id, "name": name, "owner": owner},
            "agent_version": "0.1.0",
        },
    )


def row(api: Api, workspace_id: str) -> dict[str, Any] | None:
    engine = sa.create_engine(api.db_url)
    try:
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT * FROM workspaces WHERE id = :i"), {"i": workspace_id}
            )
            mapping = found.mappings().first()
            return dict(mapping) if mapping else None
    finally:
        engine.dispose()


def report_for(ws: Workspace, **kwargs: Any) -> dict[str, Any]:
    return make_report(ws.id, [rule("roo.import")], **kwargs)


async def test_enrollment_by_agent_token_is_bound_to_coders_identity(
    api: Api, coder: CoderStandin
) -> None:
    ws = coder.add_workspace(owner="alice", name="dev", template="ai-dev")
    resp = await enroll(api, ws.id, agent_token=ws.agent.token)
    assert resp.status_code == 200, resp.text
    enrolled = wire.EnrollResponse.model_validate(resp.json())
    assert enrolled.identity_mode == "coder-agent-token"
    stored = row(api, ws.id)
    assert stored is not None
    # Coder's facts, not the claim in the body.
    assert (stored["name"], stored["owner"], stored["template_name"]) == ("dev", "alice", "ai-dev")
    assert stored["identity_mode"] == "coder-agent-token"
    # A report claiming another name does not rename a verified workspace.
    accepted = await api.report(
        enrolled.workspace_token, report_for(ws, name="renamed", owner="eve")
    )
    assert accepted.status_code == 200, accepted.text
    stored = row(api, ws.id)
    assert stored is not None and (stored["name"], stored["owner"]) == ("dev", "alice")


async def test_a_workspace_cannot_enroll_as_another(api: Api, coder: CoderStandin) -> None:
    victim, attacker = coder.add_workspace(owner="alice"), coder.add_workspace(owner="mallory")
    resp = await enroll(api, victim.id, agent_token=attacker.agent.token)
    assert resp.status_code == 403
    assert "does not belong to workspace" in resp.json()["detail"]
    assert row(api, victim.id) is None
    metrics = (await api.admin("/metrics")).text
    assert 'drift_enroll_refused_total{reason="mismatch"} 1' in metrics


async def test_a_revoked_agent_token_fails_enrollment(api: Api, coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    old = ws.agent.token
    coder.rebuild(ws)
    resp = await enroll(api, ws.id, agent_token=old)
    assert resp.status_code == 403 and "revoked" in resp.json()["detail"]
    assert row(api, ws.id) is None
    assert (await enroll(api, ws.id, agent_token=ws.agent.token)).status_code == 200


async def test_a_stolen_workspace_token_cannot_report_for_another_workspace(
    api: Api, coder: CoderStandin
) -> None:
    a, b = coder.add_workspace(owner="alice"), coder.add_workspace(owner="bob")
    token_a = (await enroll(api, a.id, agent_token=a.agent.token)).json()["workspace_token"]
    token_b = (await enroll(api, b.id, agent_token=b.agent.token)).json()["workspace_token"]
    assert (await api.report(token_b, report_for(b))).status_code == 200
    before = api.snapshot()
    forged = await api.report(token_a, report_for(b, name="b", owner="bob"))
    assert forged.status_code == 403 and "own workspace" in forged.json()["detail"]
    assert api.snapshot() == before


async def test_the_shared_secret_cannot_take_a_verified_workspace_over(
    api: Api, coder: CoderStandin
) -> None:
    ws = coder.add_workspace()
    token = (await enroll(api, ws.id, agent_token=ws.agent.token)).json()["workspace_token"]
    takeover = await enroll(api, ws.id, secret=True)
    assert takeover.status_code == 403
    assert "cannot enroll it again" in takeover.json()["detail"]
    assert (
        await api.report(token, report_for(ws))
    ).status_code == 200  # the real token still works
    # A workspace that never enrolled verified may still use the fallback, marked as such.
    legacy = await enroll(api, "ws-legacy", secret=True)
    assert legacy.status_code == 200 and legacy.json()["identity_mode"] == "enrollment-secret"


async def test_coder_down_falls_back_to_the_secret_only_when_the_secret_is_sent(
    api: Api, coder: CoderStandin
) -> None:
    ws = coder.add_workspace()
    coder.stop_serving()
    alone = await enroll(api, ws.id, agent_token=ws.agent.token)
    assert (
        alone.status_code == 503
        and "cannot verify the workspace with Coder" in alone.json()["detail"]
    )
    both = await enroll(api, ws.id, agent_token=ws.agent.token, secret=True)
    assert both.status_code == 200 and both.json()["identity_mode"] == "enrollment-secret"
    stored = row(api, ws.id)
    assert stored is not None and stored["identity_mode"] == "enrollment-secret"


async def test_require_agent_token_turns_the_secret_off(
    api_factory: Callable[..., Any], coder: CoderStandin
) -> None:
    async with api_factory(
        coder_url=coder.url,
        coder_api_token=coder.api_token,
        coder_identity_cache_s=0,
        require_agent_token=True,
    ) as api:
        refused = await enroll(api, "ws-x", secret=True)
        assert (
            refused.status_code == 403
            and "only workspaces that Coder vouches for" in refused.json()["detail"]
        )
        ws = coder.add_workspace()
        assert (await enroll(api, ws.id, agent_token=ws.agent.token)).status_code == 200
        page = await api.client.get("/", headers={"Authorization": f"Bearer {ADMIN}"})
        assert page.status_code == 200 and 'id="weak-enrollment"' not in page.text


async def test_an_agent_token_at_a_server_without_coder_says_what_is_missing(
    api_factory: Callable[..., Any],
) -> None:
    async with api_factory() as api:
        resp = await enroll(api, "ws-1", agent_token="3f0c2a5e-9b1d-4c7e-8f6a-1d2e3c4b5a69")
        assert (
            resp.status_code == 401 and "cannot verify Coder agent tokens" in resp.json()["detail"]
        )
        assert (
            await enroll(
                api, "ws-1", agent_token="3f0c2a5e-9b1d-4c7e-8f6a-1d2e3c4b5a69", secret=True
            )
        ).json()["identity_mode"] == "enrollment-secret"


async def test_enrollment_by_agent_token_alone_needs_no_secret_on_the_server(
    api_factory: Callable[..., Any], coder: CoderStandin
) -> None:
    async with api_factory(
        enrollment_secret=None, coder_url=coder.url, coder_api_token=coder.api_token
    ) as api:
        ws = coder.add_workspace()
        assert (await enroll(api, ws.id, agent_token=ws.agent.token)).status_code == 200
        missing = await enroll(api, "ws-2")
        assert missing.status_code == 401 and "Coder-Agent-Token" in missing.json()["detail"]


async def test_the_admin_pages_mark_the_weaker_mode(api: Api, coder: CoderStandin) -> None:
    ws = coder.add_workspace(owner="alice", name="dev", template="ai-dev")
    await enroll(api, ws.id, agent_token=ws.agent.token)
    await enroll(api, "ws-legacy", secret=True)
    auth = {"Authorization": f"Bearer {ADMIN}"}
    fleet = await api.client.get("/", headers=auth)
    assert fleet.status_code == 200
    assert (
        'id="weak-enrollment"' in fleet.text
        and "Shared-secret enrollment is on (weaker identity)" in fleet.text
    )
    assert "verified by Coder" in fleet.text and "unverified" in fleet.text
    verified = await api.client.get(f"/workspaces/{ws.id}", headers=auth)
    assert "verified by Coder (agent token) · template ai-dev" in verified.text
    weak = await api.client.get("/workspaces/ws-legacy", headers=auth)
    assert "unverified: enrolled with the shared enrollment secret (weaker)" in weak.text
    listed = (await api.admin(wire.WORKSPACES_PATH)).json()
    modes = {w["id"]: w["identity_mode"] for w in listed["workspaces"]}
    assert modes == {ws.id: "coder-agent-token", "ws-legacy": "enrollment-secret"}


def test_settings_need_both_coder_values(tmp_path: Path) -> None:
    from pydantic import ValidationError
    from workspace_agent_server.settings import Settings

    with pytest.raises(
        ValidationError, match="DRIFT_CODER_URL and DRIFT_CODER_API_TOKEN go together"
    ):
        Settings(db_url=f"sqlite:///{tmp_path}/d.db", coder_url="http://coder.example")
    with pytest.raises(ValidationError, match="DRIFT_REQUIRE_AGENT_TOKEN needs"):
        Settings(db_url=f"sqlite:///{tmp_path}/d.db", require_agent_token=True)


def test_a_schema_1_database_gains_the_identity_columns(tmp_path: Path) -> None:
    from workspace_agent_server import db

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = db.make_engine(url)
    db.migrate(engine)
    with engine.begin() as conn:  # make it look like a database of the first release
        conn.exec_driver_sql("ALTER TABLE workspaces DROP COLUMN identity_mode")
        conn.exec_driver_sql("ALTER TABLE workspaces DROP COLUMN template_name")
        conn.exec_driver_sql("UPDATE drift_meta SET value = '1' WHERE key = 'schema_version'")
        conn.exec_driver_sql("DELETE FROM drift_meta WHERE key = 'schema_expanded'")
    assert db.migrate(engine) == db.SCHEMA_VERSION
    with engine.connect() as conn:
        columns = {c["name"] for c in sa.inspect(conn).get_columns("workspaces")}
        version = conn.exec_driver_sql(
            "SELECT value FROM drift_meta WHERE key = 'schema_version'"
        ).scalar()
    assert {"identity_mode", "template_name"} <= columns and version == str(db.COMPATIBLE_SINCE)
    assert db.migrate(engine) == db.SCHEMA_VERSION  # idempotent
    engine.dispose()


@pytest.mark.slow
def test_end_to_end_the_agent_enrolls_by_its_agent_token(
    db_url: str,
    tmp_path: Path,
    coder: CoderStandin,
    cli_proc: Callable[..., Any],
    keyed_env: str,
    home: Path,
) -> None:
    """The real agent (a process) reports to the real server (a uvicorn process) with only its
    Coder agent token; a second workspace's token cannot make it report as the first."""
    from tests.server.conftest import free_port, serving

    ws, other = coder.add_workspace(owner="dana", name="dana-dev"), coder.add_workspace(owner="eve")
    env = {"DRIFT_CODER_URL": coder.url, "DRIFT_CODER_API_TOKEN": coder.api_token}
    with serving(db_url, tmp_path / "server.log", port=free_port(), **env) as url:
        agent = {
            "DRIFT_SERVER_URL": url,
            "CODER_WORKSPACE_ID": ws.id,
            "CODER_WORKSPACE_NAME": "whatever",
            "CODER_WORKSPACE_OWNER": "dana",
            "PROVISIONER_URL": url,
            "CODER_AGENT_TOKEN": ws.agent.token,
        }
        first = cli_proc("bootstrap", "--report", "-q", env=agent)
        assert first.code == 0, first.err
        shown = httpx.get(
            f"{url}{wire.WORKSPACES_PATH}/{ws.id}",
            headers={"Authorization": f"Bearer {ADMIN}"},
            timeout=10,
        ).json()
        assert (shown["identity_mode"], shown["name"], shown["owner"]) == (
            "coder-agent-token",
            "dana-dev",
            "dana",
        )
        assert "report identity: coder-agent-token" in cli_proc("status", env=agent).out

        forged_home = tmp_path / "forged-home"
        forged_home.mkdir()
        forged = cli_proc(
            "report",
            "--force",
            env={**agent, "HOME": str(forged_home), "CODER_AGENT_TOKEN": other.agent.token},
        )
        assert forged.code == 1
        assert "refused this workspace's identity (HTTP 403" in forged.err
        assert other.agent.token not in forged.all
    assert ws.agent.token not in (tmp_path / "server.log").read_text()
