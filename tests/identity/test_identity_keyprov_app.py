"""The hardened key provisioner in-process, against loopback stand-ins of Coder and LiteLLM.

Each test sends real HTTP requests to the app and then looks at what LiteLLM holds and what the
provisioner recorded, not only at the answers.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from key_provisioner.keys import alias

from tests.identity.provisioner_client import events, exchange, key_body, run
from tests.standins.coder_agent_api import CoderStandin, Workspace
from tests.standins.litellm_keys import LitellmKeys

# Left out of `scripts/test --fast`: each test starts the key provisioner with Coder and LiteLLM stand-ins.
pytestmark = pytest.mark.slow


def ask(
    env: dict[str, str],
    ws: Workspace | None,
    body: dict[str, Any],
    token: str | None = None,
    **options: Any,
) -> Any:
    request = {
        "body": body,
        "agent_token": token if token is not None else (ws.agent.token if ws else None),
    }
    return run(exchange(env, [request], **options))[0]


def test_a_workspace_gets_its_key_and_the_same_key_after_a_restart(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace(owner="alice", name="dev", template="ai-dev")
    first, second = run(
        exchange(
            prov_env,
            [
                {
                    "body": key_body(ws.id, enforcement_level="design-first"),
                    "agent_token": ws.agent.token,
                },
                {
                    "body": key_body(ws.id, enforcement_level="design-first"),
                    "agent_token": ws.agent.token,
                },
            ],
        )
    )
    assert (first.status, first.body["reused"], first.body["identity"]) == (
        201,
        False,
        "coder-agent-token",
    )
    assert (second.status, second.body["reused"]) == (200, True)
    assert first.key == second.key and first.key.startswith("sk-")
    row = litellm.row_for_alias(alias(ws.id))
    assert row is not None
    assert row["metadata"]["enforcement_level"] == "design-first"
    assert (row["metadata"]["username"], row["metadata"]["template_name"]) == ("alice", "ai-dev")
    assert (row["max_budget"], row["budget_duration"], row["rpm_limit"], row["tpm_limit"]) == (
        10.0,
        "1d",
        60,
        100000,
    )
    assert row["expires"] is not None  # 30-day expiry
    assert [e.kind for e in events(prov_env)] == ["key-reused", "key-issued"]
    # The key never travelled in a URL: LiteLLM was asked by its hash.
    assert all(first.key not in r.target for r in litellm.requests)


def test_a_workspace_asking_for_another_workspaces_key_is_refused(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    victim, attacker = coder.add_workspace(owner="alice"), coder.add_workspace(owner="mallory")
    victim_key = ask(prov_env, victim, key_body(victim.id)).key
    generated = len([r for r in litellm.requests if r.target == "/key/generate"])
    # mallory sends her own (valid) agent token, alice's workspace id and alice's user name
    stolen = ask(prov_env, attacker, key_body(victim.id, username="alice"))
    assert stolen.status == 403
    assert "does not belong to workspace" in stolen.body["error"]
    assert victim_key not in str(stolen.body)
    assert len([r for r in litellm.requests if r.target == "/key/generate"]) == generated
    refused = events(prov_env, "identity-refused")
    assert [(e.workspace_id, e.detail["reason"]) for e in refused] == [(victim.id, "mismatch")]


def test_a_user_name_other_than_the_owner_is_refused(
    prov_env: dict[str, str], coder: CoderStandin
) -> None:
    ws = coder.add_workspace(owner="alice")
    answer = ask(prov_env, ws, key_body(ws.id, username="bob"))
    assert answer.status == 403 and "not the owner" in answer.body["error"]
    assert "key" not in answer.body


def test_a_revoked_agent_token_gets_nothing(prov_env: dict[str, str], coder: CoderStandin) -> None:
    ws = coder.add_workspace()
    key = ask(prov_env, ws, key_body(ws.id)).key
    old_token = ws.agent.token
    coder.rebuild(ws)  # the workspace restarted: its old token is dead
    answer = ask(prov_env, ws, key_body(ws.id), token=old_token)
    assert answer.status == 403 and "revoked" in answer.body["error"] and "key" not in answer.body
    again = ask(prov_env, ws, key_body(ws.id))  # the new agent token works and finds the same key
    assert (again.status, again.key) == (200, key)


def test_coder_down_gives_a_clear_error_and_no_key(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace()
    coder.stop_serving()
    answer = ask(prov_env, ws, key_body(ws.id))
    assert answer.status == 503
    assert answer.body["error"].startswith(
        "cannot verify this workspace's identity, so no key is handed out"
    )
    assert "cannot reach Coder" in answer.body["error"]
    assert litellm.requests == []  # nothing was looked up, nothing made
    assert [e.kind for e in events(prov_env)] == ["identity-unavailable"]


def test_the_platforms_request_format_works_in_legacy_mode(
    prov_env: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    env = {**prov_env, "KEY_PROVISIONER_IDENTITY": "legacy"}
    body = {
        "workspace_id": "ws-legacy-1",
        "username": "alice",
        "workspace_name": "dev",
        "enforcement_level": "standard",
        "guardrail_action": "block",
    }
    with caplog.at_level(logging.WARNING, logger="key_provisioner"):
        first, second = run(exchange(env, [{"body": body}, {"body": body}]))
    assert (first.status, first.body["reused"], first.body["identity"]) == (
        201,
        False,
        "provisioner-secret",
    )
    assert (second.status, second.key) == (200, first.key)
    assert [e.kind for e in events(env, "legacy-request")] == ["legacy-request", "legacy-request"]
    assert any(
        "legacy request without a verified identity" in r.getMessage() for r in caplog.records
    )


def test_without_an_agent_token_required_mode_refuses(
    prov_env: dict[str, str], litellm: LitellmKeys
) -> None:
    answer = ask(prov_env, None, key_body("ws-legacy-1"))
    assert answer.status == 403
    assert (
        "Coder-Agent-Token" in answer.body["error"] and "CODER_AGENT_TOKEN" in answer.body["error"]
    )
    assert litellm.requests == []


@pytest.mark.parametrize(
    ("request_", "status", "error"),
    [
        ({"secret": "wrong-secret-123456"}, 401, "unauthorized"),
        ({"bearer": None}, 401, "unauthorized"),
        ({"body": {"workspace_id": "x"}}, 400, "workspace_id and username are required"),
        ({"body": {"username": "alice"}}, 400, "workspace_id and username are required"),
        (
            {"body": {"workspace_id": 7, "username": "alice"}},
            400,
            "workspace_id and username are required",
        ),
        ({"raw": b"{not json"}, 400, "workspace_id and username are required"),
        ({"body": ["a list"]}, 400, "workspace_id and username are required"),
    ],
)
def test_the_platforms_status_codes(
    prov_env: dict[str, str], request_: dict[str, Any], status: int, error: str
) -> None:
    request_ = {"body": key_body("ws-1"), **request_}
    answer = run(exchange(prov_env, [request_]))[0]
    assert (answer.status, answer.body) == (status, {"error": error})


def test_a_later_level_never_lowers_the_keys_level_and_the_attempt_is_recorded(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace()
    first = ask(prov_env, ws, key_body(ws.id, enforcement_level="design-first"))
    second = ask(prov_env, ws, key_body(ws.id, enforcement_level="unrestricted"))
    third = ask(prov_env, ws, key_body(ws.id, enforcement_level="design-first"))
    assert (second.status, second.key, third.key) == (200, first.key, first.key)
    row = litellm.row_for_alias(alias(ws.id))
    assert row is not None and row["metadata"]["enforcement_level"] == "design-first"
    mismatches = events(prov_env, "level-mismatch")
    assert [
        (e.detail["kept"], e.detail["requested"], e.detail["downgrade"]) for e in mismatches
    ] == [("design-first", "unrestricted", True)]


def test_an_unknown_level_becomes_standard(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace()
    assert ask(prov_env, ws, key_body(ws.id, enforcement_level="yolo")).status == 201
    row = litellm.row_for_alias(alias(ws.id))
    assert row is not None and row["metadata"]["enforcement_level"] == "standard"


def test_requests_are_rate_limited_per_workspace(
    prov_env: dict[str, str], coder: CoderStandin
) -> None:
    env = {**prov_env, "KEY_PROVISIONER_RATE_LIMIT": "3/60"}
    ws, other = coder.add_workspace(), coder.add_workspace(owner="bob")
    mine = {"body": key_body(ws.id), "agent_token": ws.agent.token}
    answers = run(
        exchange(
            env,
            [mine] * 4
            + [{"body": key_body(other.id, username="bob"), "agent_token": other.agent.token}],
        )
    )
    assert [a.status for a in answers] == [201, 200, 200, 429, 201]
    limited = answers[3]
    assert "too many key requests" in limited.body["error"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert [e.workspace_id for e in events(env, "rate-limited")] == [ws.id]


def test_litellm_failing_is_the_platforms_502(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace()
    litellm.mode = "down"
    answer = ask(prov_env, ws, key_body(ws.id))
    assert answer.status == 502
    assert answer.body["error"].startswith("Failed to generate key: LiteLLM answered HTTP 503")
    litellm.stop()
    answer = ask(prov_env, ws, key_body(ws.id))
    assert answer.status == 502 and "cannot reach LiteLLM" in answer.body["error"]


def test_a_key_deleted_by_an_admin_is_replaced_by_a_new_one_with_the_requested_level(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace()
    old = ask(prov_env, ws, key_body(ws.id, enforcement_level="unrestricted")).key
    litellm.delete_alias(alias(ws.id))
    new = ask(prov_env, ws, key_body(ws.id, enforcement_level="design-first"))
    assert new.status == 201 and new.key != old
    row = litellm.row_for_alias(alias(ws.id))
    assert row is not None and row["metadata"]["enforcement_level"] == "design-first"
    assert row["metadata"]["generation"] == 1
    assert [e.detail["reason"] for e in events(prov_env, "key-rotated")] == ["deleted"]


def test_an_expired_key_is_replaced_but_keeps_its_level(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace()
    old = ask(prov_env, ws, key_body(ws.id, enforcement_level="design-first")).key
    litellm.expire_alias(alias(ws.id))
    new = ask(prov_env, ws, key_body(ws.id, enforcement_level="unrestricted"))
    assert new.status == 201 and new.key != old
    # The dead key was removed (it held the alias); the new one keeps the old level.
    assert [
        (r["metadata"]["enforcement_level"], r["metadata"]["generation"])
        for r in litellm.rows.values()
    ] == [("design-first", 1)]
    assert [e.detail["downgrade"] for e in events(prov_env, "level-mismatch")] == [True]


def test_a_blocked_key_is_not_worked_around(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    ws = coder.add_workspace()
    ask(prov_env, ws, key_body(ws.id))
    litellm.block_alias(alias(ws.id))
    answer = ask(prov_env, ws, key_body(ws.id))
    assert answer.status == 403 and "blocked" in answer.body["error"] and "key" not in answer.body
    assert len(litellm.rows) == 1


def test_key_info_passes_litellms_answer_through(
    prov_env: dict[str, str], coder: CoderStandin
) -> None:
    ws = coder.add_workspace()
    key = ask(prov_env, ws, key_body(ws.id, enforcement_level="design-first")).key
    good, bad, none = run(
        exchange(
            prov_env,
            [
                {"method": "GET", "path": "/api/v1/keys/info", "bearer": key},
                {"method": "GET", "path": "/api/v1/keys/info", "bearer": "sk-not-a-real-key-000"},
                {"method": "GET", "path": "/api/v1/keys/info", "bearer": None},
            ],
        )
    )
    assert (
        good.status == 200 and good.body["info"]["metadata"]["enforcement_level"] == "design-first"
    )
    assert bad.status == 401 and bad.body["error"]["type"] == "auth_error"
    assert (none.status, none.body) == (401, {"error": "unauthorized"})


def test_health_and_readiness(
    prov_env: dict[str, str], coder: CoderStandin, litellm: LitellmKeys
) -> None:
    health, ready = run(
        exchange(
            prov_env,
            [
                {"method": "GET", "path": "/health", "bearer": None},
                {"method": "GET", "path": "/health/ready", "bearer": None},
            ],
        )
    )
    assert (health.status, health.body) == (200, {"status": "ok"})
    # `reconcile`: the loop's last pass (none yet: prov_env turns the loop off).
    assert (ready.status, ready.body) == (
        200, {"status": "ok", "litellm": True, "coder": True, "reconcile": None})
    coder.stop_serving()
    ready = run(exchange(prov_env, [{"method": "GET", "path": "/health/ready", "bearer": None}]))[0]
    assert (ready.status, ready.body) == (
        503,
        {"status": "degraded", "litellm": True, "coder": False, "reconcile": None},
    )


def test_no_key_token_or_secret_is_ever_logged_or_recorded(
    prov_env: dict[str, str],
    coder: CoderStandin,
    litellm: LitellmKeys,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ws, other = coder.add_workspace(), coder.add_workspace(owner="mallory")
    env = {**prov_env, "KEY_PROVISIONER_RATE_LIMIT": "2/60"}
    requests = [
        {"body": key_body(ws.id, enforcement_level="design-first"), "agent_token": ws.agent.token},
        {"body": key_body(ws.id, enforcement_level="unrestricted"), "agent_token": ws.agent.token},
        {"body": key_body(ws.id), "agent_token": ws.agent.token},  # rate limited
        {"body": key_body(ws.id, username="mallory"), "agent_token": other.agent.token},
        {"body": key_body(other.id, username="mallory"), "agent_token": other.agent.token},
    ]
    with caplog.at_level(logging.DEBUG):
        answers = run(exchange(env, requests))
        litellm.mode = "down"
        run(
            exchange(
                env,
                [
                    {
                        "body": key_body(other.id, username="mallory"),
                        "agent_token": other.agent.token,
                    }
                ],
            )
        )
    keys = [a.body["key"] for a in answers if a.status in (200, 201)]
    assert len(keys) == 3
    secrets = [
        *keys,
        ws.agent.token,
        other.agent.token,
        *(
            prov_env[n]
            for n in (
                "PROVISIONER_SECRET",
                "LITELLM_MASTER_KEY",
                "KEY_PROVISIONER_DERIVATION_SECRET",
                "CODER_API_TOKEN",
            )
        ),
    ]
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "key issued" in logged or "key-issued" in logged
    recorded = "\n".join(f"{e.kind} {e.workspace_id} {e.detail}" for e in events(env))
    for secret in secrets:
        assert secret not in logged
        assert secret not in recorded
