"""LiteLLM's database-backed routes against a REAL LiteLLM 1.108.7 proxy on a real PostgreSQL.

One proxy per session (conftest `db_proxy`, tests/litellm_db_proxy.py) on a fresh database
with LiteLLM's own migrations; mock models that cost money, so spend is real. What these tests
pin down is what the key provisioner, `ai-usage` and the hook rely on: which metadata
`/key/generate` accepts, what `/key/info` and `/user/info` answer to the key itself and to the
master key, how spend is recorded (asynchronously, per budget window), that an exhausted budget
is refused, and what `/spend/logs` allows a key that is not an admin's.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
import pytest

from tests.conftest import CliResult
from tests.litellm_db_proxy import MASTER_KEY, MODELS, RESPONSE, DbProxy
from workspace_agent import data
from workspace_agent.money import money

pytestmark = [pytest.mark.litellm, pytest.mark.postgres, pytest.mark.slow]

T = TypeVar("T")
COST = {m.name: m for m in MODELS}


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def generate(proxy: DbProxy, **body: Any) -> str:
    answer = proxy.request("POST", "/key/generate", json=body)
    assert answer.status_code == 200, answer.text
    key = answer.json()["key"]
    assert isinstance(key, str) and key.startswith("sk-")
    return key


def new_user(proxy: DbProxy, user_id: str, **body: Any) -> None:
    answer = proxy.request("POST", "/user/new", json={"user_id": user_id, "user_role": "internal_user", **body})
    assert answer.status_code == 200, answer.text


def chat(proxy: DbProxy, key: str, model: str = "claude-sonnet") -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    return proxy.request("POST", "/v1/chat/completions", key=key, json=body)


def cost_of(answer: httpx.Response, model: str) -> float:
    """What the model's prices make of the tokens the answer reports."""
    usage = answer.json()["usage"]
    return usage["prompt_tokens"] * COST[model].input_cost + usage["completion_tokens"] * COST[model].output_cost


def wait_for(probe: Callable[[], T | None], what: str, within: float = 30.0) -> T:
    """Poll until `probe` returns something (spend is written in batches, after the answer)."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not seen within {within:g} s")
        time.sleep(0.25)


def key_info(proxy: DbProxy, key: str, as_key: str | None = None) -> dict[str, Any]:
    """/key/info of `key`, asked with the key itself (default) or with `as_key`."""
    if as_key is None:
        answer = proxy.request("GET", "/key/info", key=key)
    else:
        answer = proxy.request("GET", "/key/info", key=as_key, params={"key": key})
    assert answer.status_code == 200, answer.text
    return answer.json()["info"]


def identity(workspace: str, level: str = "standard") -> dict[str, Any]:
    return {"coder_workspace": workspace, "workspace_name": "dev", "username": "alice",
            "enforcement_level": level, "key_type": "workspace"}


# ---------------------------------------------------------------------------------------------
# /key/generate and the workspace's identity


def test_proxy_runs_on_its_own_database(db_proxy: DbProxy) -> None:
    health = httpx.get(db_proxy.url + "/health/readiness", timeout=10).json()
    assert health["db"] == "connected"
    assert db_proxy.sql("SELECT current_database()") == [[db_proxy.database]]
    migrations = db_proxy.sql('SELECT count(*) FROM pg_tables WHERE tablename = \'LiteLLM_VerificationToken\'')
    assert migrations == [["1"]]


def test_generated_key_is_stored_hashed_with_the_workspace_identity(db_proxy: DbProxy) -> None:
    workspace = unique("ws")
    key = generate(db_proxy, key_alias=f"workspace-{workspace}", user_id="alice", metadata=identity(workspace))
    digest = hashlib.sha256(key.encode()).hexdigest()
    rows = db_proxy.sql(
        f"SELECT key_alias, user_id, metadata->>'coder_workspace', metadata->>'enforcement_level' "
        f"FROM \"LiteLLM_VerificationToken\" WHERE token = '{digest}'"
    )
    assert rows == [[f"workspace-{workspace}", "alice", workspace, "standard"]]
    assert db_proxy.sql(f"SELECT count(*) FROM \"LiteLLM_VerificationToken\" WHERE token = '{key}'") == [["0"]]


def test_generate_refuses_workspace_id_in_metadata(db_proxy: DbProxy) -> None:
    """Why the provisioner names the field `coder_workspace`: LiteLLM rejects `workspace_id`
    anywhere in the body (its own workspaces feature), metadata included."""
    body = {"user_id": "alice", "metadata": {"workspace_id": unique("ws"), "enforcement_level": "standard"}}
    answer = db_proxy.request("POST", "/key/generate", json=body)
    assert answer.status_code == 401, answer.text
    assert "workspace_id is not allowed in request body" in answer.json()["error"]["message"]


def test_generate_refuses_a_key_that_is_not_the_master_key(db_proxy: DbProxy) -> None:
    key = generate(db_proxy, user_id="alice", metadata=identity(unique("ws")))
    answer = db_proxy.request("POST", "/key/generate", key=key, json={"user_id": "mallory"})
    assert answer.status_code in (401, 403), answer.text
    assert db_proxy.sql("SELECT count(*) FROM \"LiteLLM_VerificationToken\" WHERE user_id = 'mallory'") == [["0"]]


def test_unknown_key_is_refused_with_401(db_proxy: DbProxy) -> None:
    answer = chat(db_proxy, "sk-not-a-key-" + uuid.uuid4().hex)
    assert answer.status_code == 401, answer.text
    assert answer.json()["error"]["type"] == "token_not_found_in_db"


# ---------------------------------------------------------------------------------------------
# /key/info and /user/info


def test_key_info_with_the_key_itself_and_with_the_master_key(db_proxy: DbProxy) -> None:
    workspace = unique("ws")
    key = generate(db_proxy, key_alias=f"workspace-{workspace}", user_id="alice", max_budget=2.5,
                   models=["claude-sonnet", "claude-haiku"], metadata=identity(workspace, "design-first"))
    own = key_info(db_proxy, key)
    admin = key_info(db_proxy, key, as_key=MASTER_KEY)
    for info in (own, admin):
        assert info["key_alias"] == f"workspace-{workspace}"
        assert info["user_id"] == "alice"
        assert info["max_budget"] == 2.5
        assert info["models"] == ["claude-sonnet", "claude-haiku"]
        assert info["metadata"] == identity(workspace, "design-first")
        assert info["spend"] == 0.0
        assert info["status"] == "active"
    # By hash too: what the provisioner asks (it never keeps the key).
    by_hash = key_info(db_proxy, hashlib.sha256(key.encode()).hexdigest(), as_key=MASTER_KEY)
    assert by_hash["metadata"]["coder_workspace"] == workspace


def test_key_info_of_another_users_key_is_refused(db_proxy: DbProxy) -> None:
    mine = generate(db_proxy, user_id=unique("u"), metadata=identity(unique("ws")))
    theirs = generate(db_proxy, user_id=unique("u"), metadata=identity(unique("ws")))
    answer = db_proxy.request("GET", "/key/info", key=mine, params={"key": theirs})
    assert answer.status_code == 403, answer.text


def test_user_info_with_the_key_and_with_the_master_key(db_proxy: DbProxy) -> None:
    user = unique("dev")
    new_user(db_proxy, user, max_budget=20.0, budget_duration="30d")
    key = generate(db_proxy, user_id=user, metadata=identity(unique("ws")))
    own = db_proxy.request("GET", "/user/info", key=key)
    admin = db_proxy.request("GET", "/user/info", params={"user_id": user})
    for answer in (own, admin):
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["user_id"] == user
        assert body["user_info"]["max_budget"] == 20.0
        assert body["user_info"]["budget_duration"] == "30d"
        assert body["user_info"]["user_role"] == "internal_user"
        # /user/new made a key of its own; the workspace key is listed beside it.
        assert hashlib.sha256(key.encode()).hexdigest() in [k["token"] for k in body["keys"]]


def test_user_info_of_another_user_is_refused(db_proxy: DbProxy) -> None:
    me, other = unique("dev"), unique("dev")
    new_user(db_proxy, me)
    new_user(db_proxy, other)
    key = generate(db_proxy, user_id=me)
    answer = db_proxy.request("GET", "/user/info", key=key, params={"user_id": other})
    assert answer.status_code == 403, answer.text


def test_user_info_is_404_when_key_generate_made_no_user(db_proxy: DbProxy) -> None:
    """/key/generate with a user_id does not create the user row: a workspace key's owner has no
    /user/info until someone makes the user (what `ai-usage` meets for such keys)."""
    key = generate(db_proxy, user_id=unique("nobody"), metadata=identity(unique("ws")))
    answer = db_proxy.request("GET", "/user/info", key=key)
    assert answer.status_code == 404, answer.text
    assert "not found" in answer.json()["error"]["message"]


# ---------------------------------------------------------------------------------------------
# Spend, budgets and budget windows


def test_chat_spend_is_recorded_for_the_key_the_user_and_the_spend_log(db_proxy: DbProxy) -> None:
    user = unique("dev")
    new_user(db_proxy, user, max_budget=10.0)
    key = generate(db_proxy, user_id=user, metadata=identity(unique("ws")))
    answer = chat(db_proxy, key, "claude-sonnet")
    assert answer.status_code == 200, answer.text
    assert answer.json()["choices"][0]["message"]["content"] == RESPONSE
    cost = cost_of(answer, "claude-sonnet")
    assert cost > 0
    spent = wait_for(lambda: key_info(db_proxy, key)["spend"] or None, "the key's spend")
    assert spent == pytest.approx(cost)
    user_info = db_proxy.request("GET", "/user/info", key=key).json()["user_info"]
    assert user_info["spend"] == pytest.approx(cost)
    digest = hashlib.sha256(key.encode()).hexdigest()
    logs = wait_for(lambda: db_proxy.sql(
        f"SELECT model_group, model, \"user\", spend FROM \"LiteLLM_SpendLogs\" WHERE api_key = '{digest}'") or None,
        "the spend log row")
    assert len(logs) == 1
    group, route, logged_user, logged_spend = logs[0]
    assert (group, route, logged_user) == ("claude-sonnet", "openai/claude-sonnet-4-5", user)
    assert float(logged_spend) == pytest.approx(cost)


def test_spend_adds_up_across_models(db_proxy: DbProxy) -> None:
    key = generate(db_proxy, user_id=unique("dev"), metadata=identity(unique("ws")))
    answers = [(chat(db_proxy, key, model), model) for model in ("claude-haiku", "claude-opus", "claude-haiku")]
    assert all(a.status_code == 200 for a, _ in answers)
    total = sum(cost_of(a, m) for a, m in answers)
    wait_for(lambda: True if key_info(db_proxy, key)["spend"] == pytest.approx(total) else None,
             f"the key's spend reaching {total}")


def test_exhausted_budget_is_refused_with_422(db_proxy: DbProxy) -> None:
    """A request is let in while the spend recorded is under the budget; once its cost is
    written, the next is refused. (Not two requests under the budget first: once, the second of
    two back-to-back $0.000324 requests was already refused with "Current cost: 0.0005…, Max
    budget: 0.0005"; the cause was not looked into.)"""
    key = generate(db_proxy, user_id=unique("dev"), max_budget=0.0002, metadata=identity(unique("ws")))
    first = chat(db_proxy, key)
    assert first.status_code == 200, first.text
    cost = cost_of(first, "claude-sonnet")
    assert cost > 0.0002  # this one request uses the budget up
    wait_for(lambda: key_info(db_proxy, key)["spend"] or None, "the request's spend")
    refused = chat(db_proxy, key)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "budget_exceeded"
    assert "Budget has been exceeded" in error["message"] and "Max budget: 0.0002" in error["message"]


def test_budget_duration_sets_the_window_end(db_proxy: DbProxy) -> None:
    before = datetime.now(UTC)
    key = generate(db_proxy, user_id=unique("dev"), max_budget=1.0, budget_duration="1d",
                   metadata=identity(unique("ws")))
    info = key_info(db_proxy, key)
    assert info["budget_duration"] == "1d"
    reset_at = datetime.fromisoformat(info["budget_reset_at"])
    assert before < reset_at <= before + timedelta(days=1, minutes=1)


def test_spend_of_a_past_window_is_reset_while_total_spend_keeps_it(db_proxy: DbProxy) -> None:
    """Windows end on clock boundaries (a 10 s window ends at :00, :10, ...); the proxy's reset
    job (every 1-2 s here) then zeroes `spend` and moves `budget_reset_at` on."""
    key = generate(db_proxy, user_id=unique("dev"), max_budget=1.0, budget_duration="10s",
                   metadata=identity(unique("ws")))
    answer = chat(db_proxy, key)
    assert answer.status_code == 200, answer.text
    cost = cost_of(answer, "claude-sonnet")
    first_end = datetime.fromisoformat(key_info(db_proxy, key)["budget_reset_at"])

    def reset_after_spend() -> dict[str, Any] | None:
        info = key_info(db_proxy, key)
        if info["total_spend"] == pytest.approx(cost) and info["spend"] == 0.0 and (
            datetime.fromisoformat(info["budget_reset_at"]) > first_end
        ):
            return info
        return None

    info = wait_for(reset_after_spend, "the window's reset", within=90)
    assert datetime.fromisoformat(info["budget_reset_at"]) > datetime.now(UTC) - timedelta(seconds=15)


# ---------------------------------------------------------------------------------------------
# /spend/logs for a key that is not an admin's, and the enforcement hook with database keys


def test_spend_logs_for_a_non_admin_key_show_only_its_own_user(db_proxy: DbProxy) -> None:
    me, other = unique("dev"), unique("dev")
    new_user(db_proxy, me)
    new_user(db_proxy, other)
    mine = generate(db_proxy, user_id=me, metadata=identity(unique("ws")))
    theirs = generate(db_proxy, user_id=other, metadata=identity(unique("ws")))
    assert chat(db_proxy, mine, "claude-haiku").status_code == 200
    assert chat(db_proxy, theirs, "claude-opus").status_code == 200
    my_hash = hashlib.sha256(mine.encode()).hexdigest()

    def own_logs() -> list[dict[str, Any]] | None:
        answer = db_proxy.request("GET", "/spend/logs", key=mine)
        assert answer.status_code == 200, answer.text
        return answer.json() or None

    logs = wait_for(own_logs, "the key's own spend logs")
    assert {row["api_key"] for row in logs} == {my_hash}
    assert {row["user"] for row in logs} == {me}
    assert {row["model_group"] for row in logs} == {"claude-haiku"}
    # Asking for another user's logs still answers with the caller's own.
    asked = db_proxy.request("GET", "/spend/logs", key=mine, params={"user_id": other}).json()
    assert {row["user"] for row in asked} == {me}
    # The master key sees both.
    wait_for(lambda: True if {me, other} <= {r["user"] for r in db_proxy.request("GET", "/spend/logs").json()} else None,
             "both users in the admin's spend logs")


def test_spend_logs_refuse_a_key_whose_user_does_not_exist(db_proxy: DbProxy) -> None:
    key = generate(db_proxy, user_id=unique("nobody"), metadata=identity(unique("ws")))
    answer = db_proxy.request("GET", "/spend/logs", key=key)
    assert answer.status_code == 401, answer.text
    assert "Only proxy admin" in answer.json()["error"]["message"]


@pytest.mark.parametrize(
    ("level", "header"),
    [
        ("standard", f"standard; sha256={data.prompt_sha256('standard')}"),
        ("design-first", f"design-first; sha256={data.prompt_sha256('design-first')}"),
        ("unrestricted", "unrestricted"),
        ("paranoid", f"design-first; sha256={data.prompt_sha256('design-first')}; fallback-from=paranoid"),
    ],
)
def test_hook_applies_the_level_in_the_keys_database_metadata(db_proxy: DbProxy, level: str, header: str) -> None:
    key = generate(db_proxy, user_id=unique("dev"), metadata=identity(unique("ws"), level))
    answer = chat(db_proxy, key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-workspace-enforcement"] == header


# ---------------------------------------------------------------------------------------------
# ai-usage and ai-models against the real proxy and its database

Cli = Callable[..., CliResult]


def use_key(monkeypatch: pytest.MonkeyPatch, proxy: DbProxy, key: str) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", key)
    monkeypatch.setenv("AI_GATEWAY_URL", proxy.url)


def test_ai_usage_reports_the_real_spend_budget_window_and_user(
    db_proxy: DbProxy, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, workspace = unique("dev"), unique("ws")
    new_user(db_proxy, user, max_budget=20.0, budget_duration="30d")
    key = generate(db_proxy, key_alias=f"workspace-{workspace}", user_id=user, max_budget=1.0,
                   budget_duration="1d", rpm_limit=60, tpm_limit=100000,
                   models=["claude-sonnet-4-5", "claude-haiku-4-5"], metadata=identity(workspace))
    answer = chat(db_proxy, key, "claude-sonnet-4-5")
    assert answer.status_code == 200, answer.text
    cost = cost_of(answer, "claude-sonnet-4-5")
    wait_for(lambda: key_info(db_proxy, key)["spend"] or None, "the key's spend")
    info = key_info(db_proxy, key)
    use_key(monkeypatch, db_proxy, key)

    result = cli("usage", "--json")
    assert result.code == 0, result.err
    doc = json.loads(result.out)
    assert doc["source"]["name"] == "litellm" and doc["source"]["url"] == db_proxy.url
    assert doc["key"]["alias"] == f"workspace-{workspace}" and doc["key"]["status"] == "active"
    assert doc["key"]["user_id"] == user and doc["key"]["models"] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert doc["budget"]["spend"] == pytest.approx(cost, abs=1e-6)
    assert doc["budget"]["max_budget"] == 1.0 and doc["budget"]["duration"] == "1d"
    assert datetime.fromisoformat(doc["budget"]["resets_at"]) == datetime.fromisoformat(
        info["budget_reset_at"])
    assert doc["limits"] == {"rpm": 60, "tpm": 100000}
    assert doc["enforcement"]["key_level"] == "standard"
    assert doc["user"]["user_id"] == user and doc["user"]["max_budget"] == 20.0
    assert doc["user"]["spend"] == pytest.approx(cost, abs=1e-6)
    assert key not in result.all

    text = cli("usage")
    assert text.code == 0, text.err
    assert f"spent     {money(cost)} of $1.00" in text.out  # a fraction of a cent, shown as one
    assert money(cost) not in ("$0.00", "$0.01")


def test_ai_usage_by_model_against_real_spend_logs(
    db_proxy: DbProxy, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `--by-model` gets from LiteLLM 1.108.7 for a key of an internal user."""
    user = unique("dev")
    new_user(db_proxy, user)
    key = generate(db_proxy, user_id=user, metadata=identity(unique("ws")))
    costs = {}
    for model in ("claude-sonnet", "claude-haiku"):
        answer = chat(db_proxy, key, model)
        assert answer.status_code == 200, answer.text
        costs[model] = cost_of(answer, model)
    digest = hashlib.sha256(key.encode()).hexdigest()
    wait_for(lambda: True if len(db_proxy.sql(
        f"SELECT 1 FROM \"LiteLLM_SpendLogs\" WHERE api_key = '{digest}'")) == 2 else None, "two spend log rows")
    use_key(monkeypatch, db_proxy, key)
    result = cli("usage", "--json", "--by-model")
    assert result.code == 0, result.err
    by_model = json.loads(result.out)["by_model"]
    assert by_model["available"] is True, by_model
    # Labelled with the names the user chose, not the provider routes LiteLLM also logs.
    assert by_model["spend"] == pytest.approx(costs, abs=1e-6)

    text = cli("usage", "--by-model")
    assert text.code == 0, text.err
    assert "claude-sonnet" in text.out and "openai/" not in text.out


def test_ai_usage_exits_12_when_the_real_budget_is_used_up(
    db_proxy: DbProxy, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate(db_proxy, user_id=unique("dev"), max_budget=0.0001, metadata=identity(unique("ws")))
    assert chat(db_proxy, key).status_code == 200
    wait_for(lambda: key_info(db_proxy, key)["spend"] or None, "the key's spend")
    use_key(monkeypatch, db_proxy, key)
    result = cli("usage", "--json")
    doc = json.loads(result.out)
    assert result.code == doc["exit_code"] == 12, result.all
    assert doc["budget"]["exhausted"] is True and doc["budget"]["spend"] > doc["budget"]["max_budget"]
    assert chat(db_proxy, key).status_code == 422  # and the gateway agrees


def test_ai_models_lists_the_keys_models_and_checks_the_hook(
    db_proxy: DbProxy, cli: Cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = generate(db_proxy, user_id=unique("dev"), models=["claude-sonnet-4-5", "claude-haiku-4-5"],
                   metadata=identity(unique("ws"), "design-first"))
    use_key(monkeypatch, db_proxy, key)
    monkeypatch.setenv("ENFORCEMENT_LEVEL", "design-first")
    result = cli("models", "--json", "--check")
    assert result.code == 0, result.all
    doc = json.loads(result.out)
    assert [m["id"] for m in doc["models"]] == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    check = doc["check"]
    assert check["model"] == "claude-sonnet-4-5" and check["status"] == 200, check
    mark = check["enforcement"]
    assert (mark["applied"], mark["level"], mark["same_prompt"], mark["matches_requested"]) == (
        True, "design-first", True, True), mark
    assert mark["sha256"] == data.prompt_sha256("design-first")
    assert key not in result.all
