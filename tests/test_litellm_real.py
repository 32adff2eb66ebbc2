"""ai-models, ai-usage and the enforcement hook against a REAL LiteLLM 1.108.7 proxy on loopback.

One proxy per session (tests/litellm_proxy.py): mock models, one model forwarded to a recording
upstream, custom auth for the workspace keys, this project's hook plus a recorder in callbacks,
no database. What LiteLLM can only answer with its database (/key/info, /user/info bodies) is
covered against the stand-in in test_usage.py / test_self_service.py; here the real proxy shows
its "Database not connected" answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CliResult
from tests.heavy import require, run_opencode
from tests.litellm_proxy import KEYS, MASTER_KEY, WORKSPACE_MODELS, Proxy, start_proxy
from tests.standins.openai_upstream import Upstream, run_upstream
from workspace_agent import data

pytestmark = [pytest.mark.litellm, pytest.mark.slow]

Cli = Callable[..., CliResult]


@pytest.fixture(scope="session")
def upstream() -> Iterator[Upstream]:
    with run_upstream() as server:
        yield server


@pytest.fixture(scope="session")
def proxy(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Proxy]:
    venv = require("WA_LITELLM_VENV", "the LiteLLM 1.108.7 proxy venv (WA_LITELLM_VENV)")
    running = start_proxy(venv, tmp_path_factory.mktemp("litellm-proxy"), upstream.url)
    try:
        yield running
    finally:
        running.stop()


def chat(proxy: Proxy, key: str, model: str = "claude-sonnet-4-5", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": 1, **extra}
    return httpx.post(proxy.url + "/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def with_key(monkeypatch: pytest.MonkeyPatch, proxy: Proxy, name: str) -> str:
    key = KEYS[name].key
    monkeypatch.setenv("LITELLM_API_KEY", key)
    monkeypatch.setenv("AI_GATEWAY_URL", proxy.url)
    return key


# ---------------------------------------------------------------------------------------------
# The hook, seen from what the model received


def test_proxy_loads_the_hook_from_the_installed_wheel(proxy: Proxy) -> None:
    loaded = proxy.records(None, "loaded")["prompts_dir"]
    assert loaded == str(proxy.site / "workspace_agent" / "_data" / "prompts")
    for level in ("standard", "design-first", "unrestricted"):
        assert (Path(loaded) / f"{level}.md").read_bytes() == data.prompt_bytes(level)


@pytest.mark.parametrize("level", ["standard", "design-first"])
def test_hook_prepends_the_shipped_prompt_bytes(proxy: Proxy, level: str) -> None:
    answer = chat(proxy, KEYS[level].key)
    assert answer.status_code == 200, answer.text
    prompt = data.prompt_bytes(level)
    assert answer.headers["x-workspace-enforcement"] == f"{level}; sha256={data.prompt_sha256(level)}"
    received = proxy.records(answer.headers["x-litellm-call-id"], "model_call")["messages"]
    assert received[0]["role"] == "system"
    assert received[0]["content"].encode("utf-8") == prompt  # the same bytes the clients get
    assert received[1:] == [{"role": "user", "content": "hello"}]


def test_hook_adds_nothing_for_unrestricted(proxy: Proxy) -> None:
    answer = chat(proxy, KEYS["unrestricted"].key)
    assert answer.status_code == 200
    assert answer.headers["x-workspace-enforcement"] == "unrestricted"
    received = proxy.records(answer.headers["x-litellm-call-id"], "model_call")["messages"]
    assert received == [{"role": "user", "content": "hello"}]


@pytest.mark.parametrize(("name", "shown"), [("unknown", "paranoid"), ("missing", "missing")])
def test_unknown_or_missing_level_gets_design_first_and_is_logged(proxy: Proxy, name: str, shown: str) -> None:
    answer = chat(proxy, KEYS[name].key)
    assert answer.status_code == 200
    sha = data.prompt_sha256("design-first")
    assert answer.headers["x-workspace-enforcement"] == f"design-first; sha256={sha}; fallback-from={shown}"
    received = proxy.records(answer.headers["x-litellm-call-id"], "model_call")["messages"]
    assert received[0] == {"role": "system", "content": data.prompt_text("design-first")}
    assert f"enforcement_level {shown} on {KEYS[name].alias} is not one of" in proxy.log()


def test_hook_keeps_the_users_own_system_message_after_the_platforms(proxy: Proxy, upstream: Upstream) -> None:
    messages = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hello"}]
    before = len(upstream.bodies)
    answer = httpx.post(
        proxy.url + "/v1/chat/completions",
        json={"model": "upstream-echo", "messages": messages, "max_tokens": 1},
        headers={"Authorization": f"Bearer {KEYS['standard'].key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert len(upstream.bodies) == before + 1
    sent_upstream = upstream.bodies[-1]  # what "the model" got over HTTP
    assert sent_upstream["messages"][0] == {"role": "system", "content": data.prompt_text("standard")}
    assert sent_upstream["messages"][1:] == messages


def test_hook_applies_to_streamed_chat_and_marks_it(proxy: Proxy) -> None:
    with httpx.stream(
        "POST",
        proxy.url + "/v1/chat/completions",
        json={"model": "claude-sonnet-4-5", "messages": [{"role": "user", "content": "hi"}], "stream": True},
        headers={"Authorization": f"Bearer {KEYS['design-first'].key}"},
        timeout=60,
    ) as answer:
        body = answer.read().decode()
        header = answer.headers.get("x-workspace-enforcement")
        call_id = answer.headers["x-litellm-call-id"]
    assert answer.status_code == 200 and "data:" in body
    assert header == f"design-first; sha256={data.prompt_sha256('design-first')}"
    assert proxy.records(call_id, "after_hooks")["messages"][0]["content"] == data.prompt_text("design-first")


def test_hook_applies_to_anthropic_messages_route(proxy: Proxy, upstream: Upstream) -> None:
    """Claude Code talks to /v1/messages: the prompt must reach the model there too."""
    before = len(upstream.bodies)
    answer = httpx.post(
        proxy.url + "/v1/messages",
        json={"model": "upstream-echo", "system": "be brief", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {KEYS['design-first'].key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-workspace-enforcement"].startswith("design-first; sha256=")
    sent = upstream.bodies[before:]
    assert len(sent) == 1
    flat = json.dumps(sent[0], ensure_ascii=False)  # wherever LiteLLM put the system text upstream
    prompt = json.dumps(data.prompt_text("design-first"), ensure_ascii=False)[1:-1]
    assert prompt in flat, "the full design-first prompt must reach the model"
    assert flat.index(prompt) < flat.index("be brief")  # the platform's text before the client's own


def test_hook_applies_to_the_responses_api(proxy: Proxy) -> None:
    answer = httpx.post(
        proxy.url + "/v1/responses",
        json={"model": "claude-sonnet-4-5", "input": "hi", "instructions": "be brief"},
        headers={"Authorization": f"Bearer {KEYS['standard'].key}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    after = proxy.records(answer.headers["x-litellm-call-id"], "after_hooks")
    assert after["call_type"] == "aresponses"
    assert after["instructions"] == data.prompt_text("standard") + "\n\nbe brief"


def _after_hooks_since(proxy: Proxy, line: int) -> list[dict[str, Any]]:
    records = proxy.records_path.read_text(encoding="utf-8").splitlines()[line:]
    return [entry for entry in map(json.loads, records) if entry["kind"] == "after_hooks"]


def _system_text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


@pytest.mark.parametrize("level", ["standard", "design-first"])
def test_real_opencode_request_carries_the_prompt_once_and_first(
    proxy: Proxy, cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch, level: str
) -> None:
    """OpenCode sends enforcement.md in its own system text; the hook does not add a second copy."""
    binary = require("WA_OPENCODE", "the OpenCode binary (npm opencode-ai)")
    with_key(monkeypatch, proxy, level)
    monkeypatch.setenv("ENFORCEMENT_LEVEL", level)
    assert cli("bootstrap", "--ai-assistant", "opencode", "-q").code == 0
    start = len(proxy.records_path.read_text(encoding="utf-8").splitlines())
    ran = run_opencode(binary, home, "run", "say hi")
    assert ran.returncode == 0, ran.stderr[-2000:]
    calls = _after_hooks_since(proxy, start)
    assert calls, "OpenCode sent nothing through the proxy"
    prompt = data.prompt_text(level)
    instructed = 0
    for call in calls:
        messages = call["messages"]
        assert messages[0] == {"role": "system", "content": prompt}  # the shipped bytes lead
        system = "".join(_system_text(m) for m in messages if m.get("role") in ("system", "developer"))
        assert system.count(prompt.strip()) == 1, "the prompt reached the model more than once"
        instructed += "Instructions from: " in system and "enforcement.md" in system
    assert instructed >= 1, "no request carried OpenCode's own instructions: the case under test did not happen"


# ---------------------------------------------------------------------------------------------
# ai-models


def test_models_lists_exactly_the_keys_models(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    key = with_key(monkeypatch, proxy, "standard")
    result = cli("models", "--json")
    doc = json.loads(result.out)
    assert result.code == 0, result.err
    assert [m["id"] for m in doc["models"]] == WORKSPACE_MODELS  # not claude-opus-4, which the proxy also has
    sonnet = doc["models"][0]
    assert sonnet["default"] is True and sonnet["used_by"] == ["roo-code", "zoo-code", "opencode"]
    assert (sonnet["max_input_tokens"], sonnet["max_output_tokens"]) == (128000, 16384)
    assert doc["models"][1]["used_by"] == ["opencode:small_model"]
    assert doc["missing"] == [] and doc["enforcement"] == {"requested": "standard"}
    assert key not in result.all


def test_models_text(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    key = with_key(monkeypatch, proxy, "standard")
    result = cli("models")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].startswith(f"ai-models: 3 models for key sk-…{key[-4:]} at {proxy.url}")
    assert lines[1].startswith("  * claude-sonnet-4-5") and lines[1].endswith("Roo Code, Zoo Code, OpenCode")
    assert "context 128,000, output 16,384" in lines[1]
    assert key not in result.all


def test_models_notes_tools_whose_model_the_key_lacks(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, proxy, "haiku-only")
    result = cli("models")
    assert result.code == 0
    assert "note: Roo Code is set up to use claude-sonnet-4-5, which this key may not use" in result.out
    assert "note: OpenCode is set up to use claude-sonnet-4-5" in result.out


def test_models_check_reports_latency_and_the_applied_prompt(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, proxy, "design-first")
    monkeypatch.setenv("ENFORCEMENT_LEVEL", "design-first")
    result = cli("models", "--check", "--json")
    doc = json.loads(result.out)
    assert result.code == 0, result.err
    check = doc["check"]
    assert check["model"] == "claude-sonnet-4-5" and check["status"] == 200 and check["latency_ms"] > 0
    assert check["enforcement"]["applied"] is True and check["enforcement"]["level"] == "design-first"
    assert check["enforcement"]["sha256"] == data.prompt_sha256("design-first")
    assert check["enforcement"]["same_prompt"] is True and check["enforcement"]["matches_requested"] is True


def test_models_check_says_when_the_key_keeps_another_level(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, proxy, "standard")
    monkeypatch.setenv("ENFORCEMENT_LEVEL", "design-first")
    result = cli("models", "--check")
    assert result.code == 0
    assert "the gateway prepended the standard prompt" in result.out
    assert "same bytes as this workspace's prompts/standard.md" in result.out
    assert "this workspace asks for design-first: the key keeps the level it was made with" in result.out


def test_models_check_default_model_not_allowed(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, proxy, "haiku-only")
    result = cli("models", "--check")
    assert result.code == 11
    assert f"the gateway at {proxy.url} does not let key sk-…" in result.err
    assert "The requested model 'claude-sonnet-4-5' is not available for this API key" in result.err
    assert "ask an admin to add it to the key" in result.err


def test_models_wrong_key(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LITELLM_API_KEY", "sk-not-a-workspace-key-1234")
    result = cli("models", "--gateway-url", proxy.url)
    assert result.code == 11
    assert f"the gateway at {proxy.url} refused key sk-…1234 (401:" in result.err
    assert "sk-not-a-workspace-key-1234" not in result.all


def test_models_expired_key(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, proxy, "expired")
    result = cli("models")
    assert result.code == 11 and "Expired Key" in result.err


def test_models_no_key(proxy: Proxy, cli: Cli) -> None:
    result = cli("models", "--gateway-url", proxy.url)
    assert result.code == 10 and "workspace-agent bootstrap" in result.err


def test_models_budget_exhausted(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, proxy, "exhausted")
    result = cli("models")
    assert result.code == 12
    assert "is used up ($12.50 spent of $10.00)" in result.err
    assert "did not say when it resets" in result.err  # /key/info is refused too: no reset time to show


def test_master_key_works_on_the_real_proxy(proxy: Proxy) -> None:
    """The custom auth must keep the admin working (the provisioner uses the master key)."""
    answer = httpx.get(proxy.url + "/v1/models", headers={"Authorization": f"Bearer {MASTER_KEY}"}, timeout=30)
    assert answer.status_code == 200 and "claude-opus-4" in answer.text


# ---------------------------------------------------------------------------------------------
# ai-usage: the real proxy has no database


def test_usage_without_database(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, proxy, "standard")
    result = cli("usage")
    assert result.code == 14
    assert f"the gateway at {proxy.url} has no database connected (500: Database not connected." in result.err
    assert "DATABASE_URL" in result.err


def test_usage_budget_exhausted(proxy: Proxy, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    with_key(monkeypatch, proxy, "exhausted")
    result = cli("usage", "--json")
    doc = json.loads(result.out)
    assert result.code == doc["exit_code"] == 12 and doc["error"]["kind"] == "budget_exhausted"


def test_models_as_a_real_process(proxy: Proxy, cli_proc: Cli, tmp_path: Path) -> None:
    result = cli_proc("models", "--check", env={"LITELLM_API_KEY": KEYS["standard"].key, "AI_GATEWAY_URL": proxy.url})
    assert result.code == 0, result.err
    assert "check: claude-sonnet-4-5 answered in" in result.out
    assert KEYS["standard"].key not in result.all
