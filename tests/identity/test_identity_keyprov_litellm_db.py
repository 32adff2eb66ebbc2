"""The key provisioner as a real process against a REAL LiteLLM 1.108.7 proxy with PostgreSQL
(conftest `db_proxy`), and the real agent through both: keys made with `/key/generate` carrying
the workspace's identity, found again by hash after a restart, a downgrade kept out, and
`bootstrap`, `ai-usage` and `ai-models` end to end. Coder is the loopback stand-in (its agent
API is not what is tested here).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO, CliResult
from tests.identity.conftest import PROVISIONER_SECRET
from tests.identity.test_identity_keyprov_process import free_port, platform_request, process_env
from tests.litellm_db_proxy import MASTER_KEY, DbProxy
from tests.standins.coder_agent_api import CoderStandin
from workspace_agent import data

pytestmark = [pytest.mark.slow, pytest.mark.litellm, pytest.mark.postgres]


@dataclass
class Provisioner:
    url: str
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)

    def events(self) -> list[dict[str, Any]]:
        run = subprocess.run([sys.executable, "-m", "key_provisioner", "events", "--json"], check=False,
                             env=self.env, capture_output=True, text=True, timeout=60, cwd=REPO)
        assert run.returncode == 0, run.stderr
        return [json.loads(line) for line in run.stdout.splitlines()]


def start_provisioner(env: dict[str, str], workdir: Path) -> Provisioner:
    port = free_port()
    log = workdir / f"provisioner-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "key_provisioner", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=workdir,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as answer:
                if answer.status == 200:
                    return Provisioner(url, env, log, process)
        except OSError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"the provisioner did not start:\n{log.read_text()}")
        time.sleep(0.1)


@pytest.fixture
def prov_db_env(db_proxy: DbProxy, coder: CoderStandin, tmp_path: Path) -> dict[str, str]:
    """A provisioner in legacy mode (agent tokens verified, the platform's secret-only request
    served) whose LiteLLM is the real proxy."""
    return process_env({
        "PROVISIONER_SECRET": PROVISIONER_SECRET,
        "LITELLM_URL": db_proxy.url,
        "LITELLM_MASTER_KEY": MASTER_KEY,
        "KEY_PROVISIONER_DERIVATION_SECRET": secrets.token_urlsafe(32),
        "KEY_PROVISIONER_DB": str(tmp_path / "prov" / "key-provisioner.db"),
        "CODER_URL": coder.url,
        "CODER_API_TOKEN": coder.api_token,
        "KEY_PROVISIONER_IDENTITY_CACHE_S": "0",
        "KEY_PROVISIONER_IDENTITY": "legacy",
    })


@pytest.fixture
def provisioner(prov_db_env: dict[str, str], tmp_path: Path) -> Iterator[Provisioner]:
    running = start_provisioner(prov_db_env, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def key_row(proxy: DbProxy, key: str) -> dict[str, Any] | None:
    """The key's row in LiteLLM's database, looked up by the hash LiteLLM stores."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    rows = proxy.sql(
        "SELECT key_alias, user_id, max_budget, budget_duration, rpm_limit, tpm_limit, metadata::text "
        f"FROM \"LiteLLM_VerificationToken\" WHERE token = '{digest}'"
    )
    if not rows:
        return None
    alias, user, budget, duration, rpm, tpm, metadata = rows[0]
    return {"key_alias": alias, "user_id": user, "max_budget": float(budget), "budget_duration": duration,
            "rpm_limit": int(rpm), "tpm_limit": int(tpm), "metadata": json.loads(metadata)}


def chat(proxy: DbProxy, key: str) -> httpx.Response:
    body = {"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hello"}]}
    return proxy.request("POST", "/v1/chat/completions", key=key, json=body)


def workspace_request(workspace: str, level: str = "standard", owner: str = "bob") -> dict[str, Any]:
    return {"workspace_id": workspace, "username": owner, "workspace_name": "dev",
            "enforcement_level": level, "guardrail_action": "block"}


# ---------------------------------------------------------------------------------------------


def test_new_workspace_key_is_made_in_litellm_with_the_workspace_identity(
    provisioner: Provisioner, db_proxy: DbProxy
) -> None:
    workspace = f"ws-{uuid.uuid4().hex[:10]}"
    status, body = platform_request(provisioner.url, workspace_request(workspace, "design-first"))
    assert status == 201, body
    key = body["key"]
    row = key_row(db_proxy, key)
    assert row is not None, "the provisioner answered 201 but LiteLLM has no such key"
    assert row["key_alias"] == f"workspace-{workspace}" and row["user_id"] == "bob"
    assert (row["max_budget"], row["budget_duration"], row["rpm_limit"], row["tpm_limit"]) == (10.0, "1d", 60, 100000)
    metadata = row["metadata"]
    assert metadata["coder_workspace"] == workspace
    assert "workspace_id" not in metadata  # the name LiteLLM refuses
    assert (metadata["enforcement_level"], metadata["username"], metadata["workspace_name"]) == (
        "design-first", "bob", "dev")
    # The key works at the gateway, and the hook applies the level the provisioner wrote.
    answer = chat(db_proxy, key)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-workspace-enforcement"] == f"design-first; sha256={data.prompt_sha256('design-first')}"
    assert key not in provisioner.log.read_text()


def test_key_is_reused_after_a_provisioner_restart_and_after_losing_its_state(
    prov_db_env: dict[str, str], db_proxy: DbProxy, tmp_path: Path
) -> None:
    workspace = f"ws-{uuid.uuid4().hex[:10]}"
    first = start_provisioner(prov_db_env, tmp_path)
    try:
        status, body = platform_request(first.url, workspace_request(workspace))
        assert status == 201, body
    finally:
        first.stop()
    key = body["key"]

    second = start_provisioner(prov_db_env, tmp_path)  # same state database
    try:
        again = platform_request(second.url, workspace_request(workspace))
    finally:
        second.stop()
    assert again[0] == 200
    assert {k: again[1][k] for k in ("key", "reused", "identity", "generation")} == {
        "key": key, "reused": True, "identity": "provisioner-secret", "generation": 0}

    # Its own database gone: the key is derived and found in LiteLLM by its hash.
    fresh = start_provisioner({**prov_db_env, "KEY_PROVISIONER_DB": str(tmp_path / "lost" / "prov.db")}, tmp_path)
    try:
        third = platform_request(fresh.url, workspace_request(workspace))
    finally:
        fresh.stop()
    assert third[0] == 200 and third[1]["key"] == key and third[1]["reused"] is True
    aliases = db_proxy.sql(f"SELECT count(*) FROM \"LiteLLM_VerificationToken\" WHERE key_alias = 'workspace-{workspace}'")
    assert aliases == [["1"]]


def test_a_downgrade_request_keeps_the_keys_level(provisioner: Provisioner, db_proxy: DbProxy) -> None:
    workspace = f"ws-{uuid.uuid4().hex[:10]}"
    status, body = platform_request(provisioner.url, workspace_request(workspace, "design-first"))
    assert status == 201, body
    lower = platform_request(provisioner.url, workspace_request(workspace, "unrestricted"))
    assert lower[0] == 200 and lower[1]["key"] == body["key"]
    row = key_row(db_proxy, body["key"])
    assert row is not None and row["metadata"]["enforcement_level"] == "design-first"
    answer = chat(db_proxy, body["key"])
    assert answer.headers["x-workspace-enforcement"].startswith("design-first; ")
    mismatches = [e for e in provisioner.events() if e["kind"] == "level-mismatch"]
    assert len(mismatches) == 1, mismatches
    assert workspace in json.dumps(mismatches[0]) and "true" in json.dumps(mismatches[0]).lower()


def test_bootstrap_usage_and_models_through_the_provisioner_and_the_real_proxy(
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
    boot = cli_proc("bootstrap", "--json", env=agent_env)
    assert boot.code == 0, boot.all
    summary = json.loads(boot.out)
    assert (summary["key"]["source"], summary["key"]["identity"]) == ("provisioner", "coder-agent-token")
    key = (home / ".config" / "workspace-agent" / "litellm.key").read_text().strip()
    row = key_row(db_proxy, key)
    assert row is not None and row["metadata"]["coder_workspace"] == ws.id and row["user_id"] == "alice"
    assert row["metadata"]["identity"] == "coder-agent-token"

    answer = chat(db_proxy, key)
    assert answer.status_code == 200, answer.text
    digest = hashlib.sha256(key.encode()).hexdigest()
    deadline = time.monotonic() + 30
    while not db_proxy.sql(f"SELECT 1 FROM \"LiteLLM_VerificationToken\" WHERE token = '{digest}' AND spend > 0"):
        assert time.monotonic() < deadline, "the chat's spend was not written within 30 s"
        time.sleep(0.25)

    usage = cli_proc("usage", "--json", env=agent_env)
    assert usage.code == 0, usage.all
    doc = json.loads(usage.out)
    assert doc["source"]["name"] == "provisioner" and doc["source"]["url"] == provisioner.url
    assert doc["key"]["alias"] == f"workspace-{ws.id}"
    assert doc["budget"]["max_budget"] == 10.0 and doc["budget"]["duration"] == "1d"
    assert doc["budget"]["spend"] > 0
    assert doc["enforcement"]["key_level"] == "standard" and doc["enforcement"]["matches"] is True

    # The provisioner's /key/generate names the owner, but LiteLLM makes no user for it: no
    # user totals, and no spend logs for this key (what --by-model then says).
    assert doc["user"] is None
    by_model = cli_proc("usage", "--json", "--by-model", env=agent_env)
    assert by_model.code == 0, by_model.all
    breakdown = json.loads(by_model.out)["by_model"]
    assert breakdown["available"] is False
    assert breakdown["reason"].startswith("the gateway offers no spend logs to this key (401: ")

    models = cli_proc("models", "--json", "--check", env=agent_env)
    assert models.code == 0, models.all
    mark = json.loads(models.out)["check"]["enforcement"]
    assert (mark["level"], mark["same_prompt"]) == ("standard", True)
    for result in (boot, usage, by_model, models):
        assert key not in result.all
