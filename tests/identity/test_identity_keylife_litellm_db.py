"""Key lifecycle end to end (issue 18): the provisioner as a real process with its reconcile loop,
the REAL LiteLLM 1.108.7 with PostgreSQL (conftest `db_proxy`), the Coder stand-in, and the real
agent. A workspace deleted in Coder loses its key within one reconcile period (401 on a real
chat, its row and spend kept); a Coder outage revokes nothing; raising the level rotates the key
and the next `bootstrap` uses the new one while LiteLLM refuses the old; a lower level is
refused until an admin approves it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CliResult
from tests.identity.conftest import PROVISIONER_SECRET
from tests.identity.test_identity_keyprov_litellm_db import (
    Provisioner,
    chat,
    key_row,
    start_provisioner,
)
from tests.identity.test_identity_keyprov_process import process_env
from tests.litellm_db_proxy import MASTER_KEY, DbProxy
from tests.standins.coder_agent_api import CoderStandin, Workspace

pytestmark = [pytest.mark.slow, pytest.mark.litellm, pytest.mark.postgres]

PERIOD_S = 2.0
ADMIN = "admin-token-Hq7Lw2Zp9Xc4Vb1N"


@pytest.fixture
def provisioner(db_proxy: DbProxy, coder: CoderStandin, tmp_path: Path) -> Iterator[Provisioner]:
    env = process_env({
        "PROVISIONER_SECRET": PROVISIONER_SECRET,
        "LITELLM_URL": db_proxy.url,
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "KEY_PROVISIONER_DERIVATION_SECRET": secrets.token_urlsafe(32),
        "KEY_PROVISIONER_DB": str(tmp_path / "prov" / "key-provisioner.db"),
        "CODER_URL": coder.url,
        "CODER_API_TOKEN": coder.api_token,
        "KEY_PROVISIONER_IDENTITY_CACHE_S": "0",
        "KEY_PROVISIONER_ADMIN_TOKENS": ADMIN,
        "KEY_PROVISIONER_RECONCILE_INTERVAL_S": str(PERIOD_S),
        "KEY_PROVISIONER_RECONCILE_CONFIRM_S": "0.2",
    })
    running = start_provisioner(env, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def ask(provisioner: Provisioner, ws: Workspace, level: str = "standard") -> httpx.Response:
    body = {"workspace_id": ws.id, "username": ws.owner, "workspace_name": ws.name,
            "enforcement_level": level, "guardrail_action": "block"}
    headers = {"Authorization": f"Bearer {PROVISIONER_SECRET}", "Coder-Agent-Token": ws.agent.token}
    return httpx.post(provisioner.url + "/api/v1/keys/workspace", json=body, headers=headers, timeout=30)


def blocked(proxy: DbProxy, key: str) -> bool | None:
    digest = hashlib.sha256(key.encode()).hexdigest()
    rows = proxy.sql(f"SELECT blocked FROM \"LiteLLM_VerificationToken\" WHERE token = '{digest}'")
    return None if not rows else rows[0][0] in ("t", "true", "True")


def reconcile_status(provisioner: Provisioner) -> dict[str, Any]:
    answer = httpx.get(provisioner.url + "/api/v1/admin/reconcile",
                       headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def wait_passes(provisioner: Provisioner, after: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status = reconcile_status(provisioner)
        if status["passes"] > after:
            return status
        assert time.monotonic() < deadline, f"no reconcile pass within {timeout} s: {status}"
        time.sleep(0.1)


def test_a_deleted_workspace_loses_its_key_within_one_period_and_an_outage_revokes_nothing(
    provisioner: Provisioner, db_proxy: DbProxy, coder: CoderStandin
) -> None:
    deleted, kept = coder.add_workspace("bob", "gone"), coder.add_workspace("carol", "kept")
    keys = {}
    for ws in (deleted, kept):
        answer = ask(provisioner, ws)
        assert answer.status_code == 201, answer.text
        keys[ws.id] = answer.json()["key"]
        assert chat(db_proxy, keys[ws.id]).status_code == 200

    # Coder down for two passes: nothing revoked, and the loop says why.
    coder.mode = "unavailable"
    before = reconcile_status(provisioner)["passes"]
    status = wait_passes(provisioner, before + 1, 4 * PERIOD_S + 10)
    assert status["last"]["outcome"] == "coder-unavailable" and status["last"]["revoked"] == 0, status
    assert "could not be asked" in provisioner.log.read_text()
    assert all(chat(db_proxy, k).status_code == 200 for k in keys.values())

    coder.mode = "normal"
    coder.delete(deleted)
    t0 = time.monotonic()
    while blocked(db_proxy, keys[deleted.id]) is not True:
        assert time.monotonic() - t0 < PERIOD_S + 5, "the deleted workspace's key was not revoked in one period"
        time.sleep(0.1)
    revoked_after = time.monotonic() - t0
    refused = chat(db_proxy, keys[deleted.id])
    assert refused.status_code == 401, refused.text
    assert chat(db_proxy, keys[kept.id]).status_code == 200
    # The row (alias, metadata, spend) stays for admins: LiteLLM's own /key/info says "revoked"
    # and still shows what the key spent before (written asynchronously: waited for).
    row = key_row(db_proxy, keys[deleted.id])
    assert row is not None and row["metadata"]["coder_workspace"] == deleted.id
    digest = hashlib.sha256(keys[deleted.id].encode()).hexdigest()
    deadline = time.monotonic() + 30
    while True:
        info = db_proxy.request("GET", f"/key/info?key={digest}").json()["info"]
        if info["spend"] > 0 or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert (info["status"], info["key_alias"]) == ("revoked", f"workspace-{deleted.id}"), info
    assert info["spend"] > 0, "the revoked key's spend is gone"
    kinds = [e["kind"] for e in provisioner.events() if e["workspace_id"] == deleted.id]
    assert "workspace-revoked" in kinds and "key-revoked" in kinds
    print(f"revoked {revoked_after:.2f} s after the deletion (period {PERIOD_S} s)")


def test_raising_the_level_rotates_and_the_next_bootstrap_uses_the_new_key(
    provisioner: Provisioner, db_proxy: DbProxy, coder: CoderStandin,
    cli_proc: Callable[..., CliResult], home: Path,
) -> None:
    ws = coder.add_workspace(owner="alice", name="dev")
    agent_env = {
        "HOME": str(home),
        "CODER_WORKSPACE_ID": ws.id,
        "CODER_WORKSPACE_OWNER": "alice",
        "CODER_WORKSPACE_NAME": "dev",
        "CODER_AGENT_TOKEN": ws.agent.token,
        "PROVISIONER_URL": provisioner.url,
        "PROVISIONER_SECRET": PROVISIONER_SECRET,
        "AI_GATEWAY_URL": db_proxy.url,
        "ENFORCEMENT_LEVEL": "standard",
        "WORKSPACE_AGENT_PROVISION_DEADLINE": "20",
    }
    key_file = home / ".config" / "workspace-agent" / "litellm.key"
    first = cli_proc("bootstrap", "--json", env=agent_env)
    assert first.code == 0, first.all
    old_key = key_file.read_text().strip()
    assert json.loads(first.out)["key"]["generation"] == 0

    # The admin raises the workspace's level; the next start picks the rotated key up by itself.
    raised = cli_proc("bootstrap", "--json", env=agent_env | {"ENFORCEMENT_LEVEL": "design-first"})
    assert raised.code == 0, raised.all
    summary = json.loads(raised.out)["key"]
    new_key = key_file.read_text().strip()
    assert new_key != old_key
    assert (summary["generation"], summary["level"], summary["rotated"]) == (1, "design-first", True)
    assert chat(db_proxy, old_key).status_code == 401  # LiteLLM refuses the old key
    answer = chat(db_proxy, new_key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-workspace-enforcement"].startswith("design-first; ")
    row = key_row(db_proxy, new_key)
    assert row is not None and (row["metadata"]["generation"], row["metadata"]["rotated_from_level"]) == (1, "standard")

    status = cli_proc("status", env=agent_env | {"ENFORCEMENT_LEVEL": "design-first"})
    assert "generation 1, rotated " in status.out and "for level design-first" in status.out, status.all
    usage = cli_proc("usage", env=agent_env | {"ENFORCEMENT_LEVEL": "design-first"})
    assert usage.code == 0, usage.all
    assert "generation 1, rotated " in usage.out and "for level design-first" in usage.out, usage.out
    check = cli_proc("check", "--json", env=agent_env | {"ENFORCEMENT_LEVEL": "design-first"})
    assert json.loads(check.out)["key"]["generation"] == 1  # known offline too
    for result in (first, raised, status, usage, check):
        assert old_key not in result.all and new_key not in result.all


def test_a_lower_level_is_refused_until_an_admin_approves_it(
    provisioner: Provisioner, db_proxy: DbProxy, coder: CoderStandin
) -> None:
    ws = coder.add_workspace(owner="dave", name="dev")
    made = ask(provisioner, ws, "design-first").json()
    refused = ask(provisioner, ws, "unrestricted")
    assert refused.status_code == 200 and refused.json()["key"] == made["key"]
    assert (refused.json()["level"], refused.json()["level_change"]) == ("design-first", "refused")
    approve = httpx.post(provisioner.url + f"/api/v1/admin/workspaces/{ws.id}/level",
                         json={"level": "unrestricted", "by": "erin", "reason": "pairing session"},
                         headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)
    assert approve.status_code == 200, approve.text
    t0 = time.perf_counter()
    lowered = ask(provisioner, ws, "unrestricted")
    print(f"a rotation answered in {1000 * (time.perf_counter() - t0):.0f} ms (rename, generate, store, block)")
    assert lowered.status_code == 201, lowered.text
    assert (lowered.json()["level"], lowered.json()["generation"]) == ("unrestricted", 1)
    assert chat(db_proxy, made["key"]).status_code == 401
    answer = chat(db_proxy, lowered.json()["key"])
    assert answer.status_code == 200 and answer.headers["x-workspace-enforcement"].startswith("unrestricted")
    approvals = [e for e in provisioner.events() if e["kind"] == "level-approved"]
    assert approvals and "erin" in approvals[0]["identity"] and ADMIN not in json.dumps(approvals)


def test_find_tells_an_unknown_key_from_a_known_one_in_the_real_litellm(
    provisioner: Provisioner, db_proxy: DbProxy, coder: CoderStandin
) -> None:
    """find() now takes only LiteLLM's own 404 body for "no such key": the real 1.108.7 must still
    be understood (it answers {"error": {"message": "Key not found in database"}} with 404)."""
    import asyncio

    from key_provisioner.litellm import LiteLLM

    ws = coder.add_workspace("alice")
    made = ask(provisioner, ws)
    assert made.status_code == 201, made.text
    litellm = LiteLLM(db_proxy.url, MASTER_KEY, timeout=30)
    assert asyncio.run(litellm.find("sk-never-made-" + secrets.token_urlsafe(16))) is None
    facts = asyncio.run(litellm.find(made.json()["key"]))
    assert facts is not None and not facts.blocked
