"""Key lifecycle in the provisioner, in-process over real loopback HTTP to the Coder and LiteLLM
stand-ins (issue 18): reconcile passes revoke only on Coder's 410, a Coder outage or a 404 revokes
nothing, the safety brake holds, a level change rotates in a crash-safe order, a downgrade needs
an admin, and the template's delete hook revokes only what Coder says is being deleted.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from key_provisioner.keys import alias, old_alias

from tests.identity.provisioner_client import events, exchange, key_body, run
from tests.standins.coder_agent_api import CoderStandin, Workspace
from tests.standins.litellm_keys import LitellmKeys, token_hash

# Left out of `scripts/test --fast-server`: each test starts the provisioner with Coder and LiteLLM stand-ins.
pytestmark = pytest.mark.slow

ADMIN = "admin-token-Hq7Lw2Zp9Xc4Vb1N"
REVOKE = "revoke-secret-Tt5Gm8Ks3Jd6Rf0Y"
RECONCILE = "/api/v1/admin/reconcile"


@pytest.fixture
def env(prov_env: dict[str, str]) -> dict[str, str]:
    return prov_env | {
        "KEY_PROVISIONER_ADMIN_TOKENS": ADMIN,
        "KEY_PROVISIONER_REVOKE_SECRET": REVOKE,
        "KEY_PROVISIONER_RECONCILE_INTERVAL_S": "0",  # passes on request only
        "KEY_PROVISIONER_RECONCILE_CONFIRM_S": "0",
    }


def key_request(ws: Workspace, level: str = "standard") -> dict[str, Any]:
    return {"body": key_body(ws.id, ws.owner, enforcement_level=level), "agent_token": ws.agent.token}


def admin(path: str, body: dict[str, Any] | None = None, method: str = "POST") -> dict[str, Any]:
    item: dict[str, Any] = {"path": path, "bearer": ADMIN, "method": method}
    if body is not None:
        item["body"] = body
    return item


def row(litellm: LitellmKeys, key: str) -> dict[str, Any]:
    return litellm.rows[token_hash(key)]


def test_a_deleted_workspace_loses_its_key_at_the_next_pass_and_gets_no_new_one(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    kept, deleted = coder.add_workspace("alice"), coder.add_workspace("bob")
    first = run(exchange(env, [key_request(kept), key_request(deleted)]))
    coder.delete(deleted)
    passed, again = run(exchange(env, [admin(RECONCILE), {"body": key_body(deleted.id, "bob"), "secret": None}]))
    assert passed.status == 200, passed.body
    result = passed.body
    assert (result["outcome"], result["checked"], result["gone"], result["revoked"]) == ("ok", 2, 1, 1)
    assert result["gone_ids"] == [deleted.id]
    assert row(litellm, first[1].key)["blocked"] is True  # blocked, not deleted: spend history stays
    assert row(litellm, first[1].key)["key_alias"] == alias(deleted.id)
    assert not row(litellm, first[0].key).get("blocked")
    # Even the legacy secret-only path cannot bring it back.
    legacy = run(exchange(env | {"KEY_PROVISIONER_IDENTITY": "legacy"}, [{"body": key_body(deleted.id, "bob")}]))[0]
    assert legacy.status == 403 and "revoked" in legacy.body["error"], legacy.body
    assert [e.kind for e in events(env, "key-revoked")] == ["key-revoked"]
    assert again.status == 401  # no secret


def test_gone_must_be_said_twice(env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys) -> None:
    ws = coder.add_workspace("alice")
    key = run(exchange(env, [key_request(ws)]))[0].key
    real, calls = coder._workspace, []

    def gone_once(token: str, workspace_id: str) -> tuple[int, Any]:
        calls.append(workspace_id)
        gone = {"message": f'Workspace "{workspace_id}" was deleted, you can view this workspace by '
                           "specifying '?deleted=true' and trying again."}
        return (410, gone) if len(calls) == 1 else real(token, workspace_id)

    coder._workspace = gone_once  # type: ignore[method-assign]
    result = run(exchange(env, [admin(RECONCILE)]))[0].body
    assert len(calls) == 2 and (result["revoked"], result["gone"], result["present"]) == (0, 0, 0), result
    assert not row(litellm, key).get("blocked")


@pytest.mark.parametrize("outage", ["unavailable", "stopped", "forgotten"])
def test_a_coder_outage_or_a_404_revokes_nothing(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys, outage: str
) -> None:
    fleet = [coder.add_workspace(f"user{n}") for n in range(5)]
    keys = [a.key for a in run(exchange(env, [key_request(ws) for ws in fleet]))]
    if outage == "unavailable":
        coder.mode = "unavailable"
    elif outage == "stopped":
        coder.stop_serving()
    else:
        for ws in fleet:
            coder.forget(ws)  # 404: unknown to this token, not "gone"
    result = run(exchange(env, [admin(RECONCILE)]))[0].body
    assert result["revoked"] == 0, result
    if outage == "forgotten":
        assert (result["outcome"], result["unknown"]) == ("ok", 5)
    else:
        assert result["outcome"] == "coder-unavailable" and "could not be asked" in result["problem"]
    assert not any(row(litellm, k).get("blocked") for k in keys)


def test_the_brake_stops_a_mass_revocation(env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys) -> None:
    fleet = [coder.add_workspace(f"user{n}") for n in range(10)]
    keys = [a.key for a in run(exchange(env, [key_request(ws) for ws in fleet]))]
    for ws in fleet[:4]:
        coder.delete(ws)
    braked = env | {"KEY_PROVISIONER_RECONCILE_MAX_ALWAYS": "2", "KEY_PROVISIONER_RECONCILE_MAX_FRACTION": "0.2"}
    result = run(exchange(braked, [admin(RECONCILE)]))[0].body
    assert (result["outcome"], result["gone"], result["revoked"]) == ("braked", 4, 0), result
    assert not any(row(litellm, k).get("blocked") for k in keys)
    # With room for four, the same pass revokes exactly the four.
    result = run(exchange(braked | {"KEY_PROVISIONER_RECONCILE_MAX_ALWAYS": "4"}, [admin(RECONCILE)]))[0].body
    assert (result["outcome"], result["revoked"]) == ("ok", 4), result
    assert [bool(row(litellm, k).get("blocked")) for k in keys] == [True] * 4 + [False] * 6


def test_raising_the_level_rotates_the_key(env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys) -> None:
    ws = coder.add_workspace("alice")
    first, raised, again = run(exchange(env, [key_request(ws), key_request(ws, "design-first"),
                                              key_request(ws, "design-first")]))
    assert (first.status, first.body["generation"], first.body["level"]) == (201, 0, "standard")
    assert raised.status == 201 and raised.key != first.key, raised.body
    assert {k: raised.body[k] for k in ("generation", "level", "rotated", "level_change")} == {
        "generation": 1, "level": "design-first", "rotated": True, "level_change": "raised"}
    old, new = row(litellm, first.key), row(litellm, raised.key)
    assert old["blocked"] is True and old["key_alias"] == old_alias(ws.id, 0)
    assert new["key_alias"] == alias(ws.id) and not new.get("blocked")
    assert (new["metadata"]["enforcement_level"], new["metadata"]["generation"]) == ("design-first", 1)
    assert new["metadata"]["rotated_from_level"] == "standard"
    assert new["metadata"]["rotated_at"] == raised.body["rotated_at"]
    assert (again.status, again.key, again.body["generation"]) == (200, raised.key, 1)
    assert again.body["rotated_at"] == raised.body["rotated_at"] and "level_change" not in again.body
    # The old key was blocked only after the new one was made (no moment without a valid key).
    paths = [r.target.split("?")[0] for r in litellm.requests]
    made = max(i for i, p in enumerate(paths) if p == "/key/generate")
    assert paths.index("/key/update") < made < max(i for i, p in enumerate(paths) if p == "/key/block")


def test_a_failed_block_is_queued_and_retried(env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys) -> None:
    ws = coder.add_workspace("alice")
    first = run(exchange(env, [key_request(ws)]))[0]
    litellm.failing.add("/key/block")
    raised = run(exchange(env, [key_request(ws, "design-first")]))[0]
    assert raised.status == 201 and raised.body["generation"] == 1  # the workspace has its new key
    assert not row(litellm, first.key).get("blocked")  # not yet revoked …
    litellm.failing.clear()
    result = run(exchange(env, [admin(RECONCILE)]))[0].body
    assert result["retried_done"] == 1, result  # … until the next pass retried it
    assert row(litellm, first.key)["blocked"] is True


def test_a_lower_level_needs_an_admin_and_the_approval_is_used_once(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace("alice")
    level = f"/api/v1/admin/workspaces/{ws.id}/level"
    answers = run(exchange(env, [
        key_request(ws, "design-first"),
        key_request(ws, "standard"),  # refused: keeps design-first
        admin(level, {"level": "standard", "by": ""}),  # who approves must be said
        {**admin(level, {"level": "standard", "by": "carol", "reason": "ticket 42"}), "bearer": "wrong-token-aaaaaaaaaaaa"},
        admin(level, {"level": "standard", "by": "carol", "reason": "ticket 42"}),
        key_request(ws, "standard"),  # now rotated down
        key_request(ws, "unrestricted"),  # the approval was for standard, and is used up
    ]))
    made, refused, nobody, wrong, approved, lowered, lower_again = answers
    assert (refused.status, refused.key, refused.body["level"], refused.body["level_change"]) == (
        200, made.key, "design-first", "refused")
    assert (nobody.status, wrong.status, approved.status) == (400, 401, 200)
    assert lowered.status == 201 and lowered.body["level_change"] == "lowered" and lowered.body["level"] == "standard"
    assert row(litellm, lowered.key)["metadata"]["enforcement_level"] == "standard"
    assert row(litellm, made.key)["blocked"] is True
    assert (lower_again.status, lower_again.key, lower_again.body["level_change"]) == (200, lowered.key, "refused")
    audit = events(env, "level-approved")
    assert len(audit) == 1 and "carol" in audit[0].identity and audit[0].detail["reason"] == "ticket 42"
    assert ADMIN not in str([e.detail for e in events(env)]) + str([e.identity for e in events(env)])
    rotated = [e for e in events(env, "key-rotated") if e.detail.get("previous_level") == "design-first"]
    assert rotated and "carol" in rotated[0].detail["approved_by"]


def test_the_delete_hook_revokes_only_what_coder_is_deleting(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace("alice")
    key = run(exchange(env, [key_request(ws)]))[0].key
    hook = f"/api/v1/keys/workspace/{ws.id}/revoke"
    alive, wrong = run(exchange(env, [{"path": hook, "bearer": REVOKE, "body": {}},
                                      {"path": hook, "bearer": "not-the-secret-xxxxxxxx", "body": {}}]))
    assert (alive.status, wrong.status) == (409, 401), (alive.body, wrong.body)
    assert not row(litellm, key).get("blocked")
    coder.begin_delete(ws)  # the delete build runs the hook
    deleting, repeat = run(exchange(env, [{"path": hook, "bearer": REVOKE, "body": {}},
                                          {"path": hook, "bearer": REVOKE, "body": {}}]))
    assert deleting.status == 200 and deleting.body == {
        "revoked": True, "already": False, "workspace_id": ws.id, "coder": "deleting"}
    assert repeat.body["already"] is True
    assert row(litellm, key)["blocked"] is True
    coder.mode = "unavailable"  # Coder down: the hook cannot confirm, 503
    down = run(exchange(env, [{"path": f"/api/v1/keys/workspace/{coder.add_workspace('x').id}/revoke",
                               "bearer": REVOKE, "body": {}}]))[0]
    assert down.status == 503 and "reconcile loop" in down.body["error"]


def test_the_loop_runs_on_its_own_and_says_so_in_health(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace("alice")
    key = run(exchange(env, [key_request(ws)]))[0].key
    coder.delete(ws)

    import asyncio

    async def started_and_waited() -> Any:
        from key_provisioner.app import create_app
        from key_provisioner.settings import from_env

        app = create_app(from_env(env | {"KEY_PROVISIONER_RECONCILE_INTERVAL_S": "1"}))
        async with app.router.lifespan_context(app):
            for _ in range(100):
                if app.state.reconciler.last is not None:
                    break
                await asyncio.sleep(0.05)
            return app.state.reconciler.status()

    status = asyncio.run(started_and_waited())
    assert status["passes"] >= 1 and status["last"]["revoked"] == 1, status
    assert row(litellm, key)["blocked"] is True


def test_an_admin_on_the_host_approves_with_the_cli(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    import subprocess
    import sys

    from tests.identity.test_identity_keyprov_process import process_env

    ws = coder.add_workspace("alice")
    made = run(exchange(env, [key_request(ws, "design-first")]))[0]
    cli = [sys.executable, "-m", "key_provisioner", "approve-level", "--workspace", ws.id,
           "--level", "standard", "--by", "carol", "--reason", "ticket 7"]
    done = subprocess.run(cli, env=process_env(env), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert f"workspace {ws.id} may lower its key to standard" in done.stdout
    nobody = subprocess.run([*cli[:-4], "--by", " "], env=process_env(env), capture_output=True, text=True,
                            timeout=60, check=False)
    assert nobody.returncode == 2 and "--by must name" in nobody.stderr
    lowered = run(exchange(env, [key_request(ws, "standard")]))[0]
    assert (lowered.status, lowered.body["level"], lowered.body["generation"]) == (201, "standard", 1)
    assert row(litellm, made.key)["blocked"] is True
    audit = events(env, "level-approved")
    assert [e.identity for e in audit] == ["cli (carol)"]


def hook_command() -> str:
    """The template's destroy-time command, as Terraform hands it to `sh -c` (HCL unescaped)."""
    import re

    from tests.conftest import REPO

    text = (REPO / "dockerfile" / "coder-template.tf").read_text()
    block = text.split('resource "terraform_data" "revoke_key_on_delete"', 1)[1]
    assert re.search(r"when\s*=\s*destroy", block) and re.search(r"on_failure\s*=\s*continue", block)
    assert "start_count" not in block  # must live until the delete build
    raw = re.search(r'^\s*command\s*=\s*"((?:[^"\\]|\\.)*)"\s*$', block, re.MULTILINE)
    assert raw is not None
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), raw.group(1))


def test_the_templates_delete_hook_command_revokes_a_deleting_workspace(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys, tmp_path: Any
) -> None:
    import subprocess

    from tests.identity.test_identity_keyprov_litellm_db import start_provisioner
    from tests.identity.test_identity_keyprov_process import process_env

    ws = coder.add_workspace("alice")
    key = run(exchange(env, [key_request(ws)]))[0].key
    command = hook_command()
    assert REVOKE not in command and "KEY_PROVISIONER_REVOKE_SECRET" in command
    provisioner = start_provisioner(process_env(env), tmp_path)
    try:
        url = provisioner.url
        shell = command.replace("${self.input.url}", url).replace("${self.input.workspace_id}", ws.id)
        hook_env = {"PATH": "/usr/bin:/bin", "KEY_PROVISIONER_REVOKE_SECRET": REVOKE}
        alive = subprocess.run(["sh", "-c", shell], env=hook_env, capture_output=True, text=True, timeout=60, check=False)
        assert alive.returncode != 0 and "409" in alive.stderr, alive  # a live workspace keeps its key
        assert not row(litellm, key).get("blocked")
        coder.begin_delete(ws)
        done = subprocess.run(["sh", "-c", shell], env=hook_env, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["revoked"] is True
    finally:
        provisioner.stop()
    assert row(litellm, key)["blocked"] is True
    assert REVOKE not in provisioner.log.read_text()


def test_an_interrupted_rotation_keeps_the_old_key_and_completes_later(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace("alice")
    first = run(exchange(env, [key_request(ws)]))[0]
    # The new key cannot be made: the workspace keeps its old key, still valid (moved alias only).
    litellm.failing.add("/key/generate")
    failed = run(exchange(env, [key_request(ws, "design-first")]))[0]
    assert failed.status == 502, failed.body
    assert not row(litellm, first.key).get("blocked") and row(litellm, first.key)["key_alias"] == old_alias(ws.id, 0)
    litellm.failing.clear()
    # The new key is made but the answer is lost: the provisioner finds it and finishes.
    litellm.lost.add("/key/generate")
    raised = run(exchange(env, [key_request(ws, "design-first")]))[0]
    assert (raised.status, raised.body["generation"], raised.body["level"]) == (201, 1, "design-first"), raised.body
    assert row(litellm, first.key)["blocked"] is True and row(litellm, raised.key)["key_alias"] == alias(ws.id)
    # A workspace asking for its old level again now is a downgrade: refused, same new key.
    again = run(exchange(env, [key_request(ws, "standard")]))[0]
    assert (again.status, again.key, again.body["level_change"]) == (200, raised.key, "refused")


def test_a_lost_store_follows_the_rotations_in_litellm(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys, tmp_path: Any
) -> None:
    ws = coder.add_workspace("alice")
    first, raised = run(exchange(env, [key_request(ws), key_request(ws, "design-first")]))
    assert raised.body["generation"] == 1
    # Its database gone (or another replica rotated): generation 0 is blocked and renamed, so the
    # provisioner looks further instead of refusing the workspace or making a key of generation 0.
    fresh = env | {"KEY_PROVISIONER_DB": str(tmp_path / "lost" / "prov.db")}
    again, lower = run(exchange(fresh, [key_request(ws, "design-first"), key_request(ws, "standard")]))
    assert (again.status, again.key, again.body["generation"]) == (200, raised.key, 1), again.body
    assert (lower.status, lower.key, lower.body["level"]) == (200, raised.key, "design-first")


def test_a_replica_that_missed_a_rotation_revokes_the_current_key(
    env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys, tmp_path: Any
) -> None:
    ws = coder.add_workspace("alice")
    _first, raised = run(exchange(env, [key_request(ws), key_request(ws, "design-first")]))
    other = env | {"KEY_PROVISIONER_DB": str(tmp_path / "replica-b" / "prov.db")}
    revoke = f"/api/v1/admin/workspaces/{ws.id}/revoke"
    odd, done = run(exchange(other, [
        admin("/api/v1/admin/workspaces/%20x/revoke", {"by": "carol"}),
        admin(revoke, {"by": "carol", "reason": "left the company"}),
    ]))
    assert odd.status == 400, odd.body
    assert done.status == 200 and done.body["already"] is False, done.body
    assert row(litellm, raised.key)["blocked"] is True  # generation 1, not the stored-nowhere 0
    revoked = events(other, "workspace-revoked")
    assert revoked[0].detail == {"generation": 1, "reason": "admin: left the company"}
    assert "carol" in revoked[0].identity
