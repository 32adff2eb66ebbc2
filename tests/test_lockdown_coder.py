"""Layer 1: the Coder server's AI switches, read from a loopback stand-in of Coder's API."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.standins.coder import run_coder
from workspace_agent.lockdown import coder
from workspace_agent.lockdown.spec import load
from workspace_agent.plan import apply_plan, build_plan

# Left out of `scripts/test --fast`: each test talks to a Coder stand-in over loopback.
pytestmark = pytest.mark.slow

REQUIRED = load({}).coder_env
LOCKED_ENV = {
    "CODER_AIBRIDGE_ENABLED": "false",
    "CODER_AI_GATEWAY_ENABLED": "false",
    "CODER_HIDE_AI_TASKS": "true",
    "CODER_OAUTH2_GITHUB_DEFAULT_PROVIDER_ENABLE": "false",
}
TOKENS = {"tok-owner-7f3k": "owner", "tok-auditor-2m9x": "auditor", "tok-member-5q1z": "member"}


def seen(document) -> dict[str, str | None]:
    return {s.requirement.name: s.actual for s in coder.evaluate(document, REQUIRED)}


def test_evaluate_reads_options_by_env_name_under_every_name() -> None:
    document = {
        "options": [
            {"env": "CODER_AI_GATEWAY_ENABLED", "value": False},
            {"env": "CODER_AIBRIDGE_ENABLED", "value": True},  # the alias disagrees: that is reported
            {"env": "CODER_HIDE_AI_TASKS", "value": "true"},
        ],
        "config": {"oauth2": {"github": {"default_provider_enable": False}}},
    }
    assert seen(document) == {
        "CODER_AIBRIDGE_ENABLED": "true",
        "CODER_HIDE_AI_TASKS": "true",
        "CODER_OAUTH2_GITHUB_DEFAULT_PROVIDER_ENABLE": "false",  # from the typed config
    }


def test_evaluate_says_unknown_when_the_server_does_not_report_it() -> None:
    assert seen({"config": {}, "options": []}) == dict.fromkeys(
        ("CODER_AIBRIDGE_ENABLED", "CODER_HIDE_AI_TASKS", "CODER_OAUTH2_GITHUB_DEFAULT_PROVIDER_ENABLE")
    )
    assert seen("not a document") == seen({})


def test_not_configured_says_not_verifiable() -> None:
    result = build_plan([coder.server_env_rule(REQUIRED, "", "", online=True)]).results[0]
    assert result.state == "compliant" and result.message == coder.NOT_VERIFIABLE
    assert "not verifiable from a workspace" in result.message


@pytest.mark.parametrize("renamed", [False, True], ids=["aibridge", "ai-gateway"])
def test_locked_server_is_verified(renamed: bool) -> None:
    with run_coder(LOCKED_ENV, TOKENS, renamed=renamed) as server:
        result = build_plan([coder.server_env_rule(REQUIRED, server.url, "tok-auditor-2m9x", online=True)]).results[0]
        assert server.requests == [("/api/v2/deployment/config", "tok-auditor-2m9x")]
    assert result.state == "compliant" and result.message == f"verified with {server.url}"


def test_default_server_is_drift_reported_not_fixed() -> None:
    with run_coder({}, TOKENS, renamed=True) as server:  # a new Coder: AI Gateway on by default
        rule = coder.server_env_rule(REQUIRED, server.url, "tok-owner-7f3k", online=True)
        plan = build_plan([rule])
        final = apply_plan(plan)[0]
    result = plan.results[0]
    assert result.state == "drift" and final.state == "drift"
    assert result.before == "CODER_AIBRIDGE_ENABLED=true, CODER_HIDE_AI_TASKS=false, CODER_OAUTH2_GITHUB_DEFAULT_PROVIDER_ENABLE=true"
    assert result.after == "CODER_AIBRIDGE_ENABLED=false, CODER_HIDE_AI_TASKS=true, CODER_OAUTH2_GITHUB_DEFAULT_PROVIDER_ENABLE=false"
    assert "report only: set it in the Coder server's environment" in (result.message or "")


def test_member_token_is_an_error_naming_the_roles() -> None:
    with run_coder(LOCKED_ENV, TOKENS) as server:
        result = build_plan([coder.server_env_rule(REQUIRED, server.url, "tok-member-5q1z", online=True)]).results[0]
    assert result.state == "error"
    assert result.message == (
        f"Coder at {server.url} refused coder_token (HTTP 403): reading the deployment config needs a token "
        "of a user with the Owner or Auditor role"
    )


def test_unreachable_coder_is_an_error() -> None:
    with run_coder(LOCKED_ENV, TOKENS) as server:
        url = server.url
    result = build_plan([coder.server_env_rule(REQUIRED, url, "tok-owner-7f3k", online=True)]).results[0]
    assert result.state == "error" and result.message.startswith(f"cannot reach Coder at {url}")


def test_plan_and_check_make_no_network_call() -> None:
    with run_coder(LOCKED_ENV, TOKENS) as server:
        result = build_plan([coder.server_env_rule(REQUIRED, server.url, "tok-owner-7f3k", online=False)]).results[0]
        assert server.requests == []
    assert result.state == "compliant" and "by bootstrap only" in (result.message or "")


def test_cli_checks_coder_in_bootstrap_only_and_never_prints_the_token(home: Path, keyed_env: str, cli, monkeypatch) -> None:
    with run_coder({}, TOKENS, renamed=True) as server:
        monkeypatch.setenv("WORKSPACE_AGENT_CODER_URL", server.url)
        monkeypatch.setenv("WORKSPACE_AGENT_CODER_TOKEN", "tok-owner-7f3k")
        checked = cli("check", "--json")
        assert server.requests == []
        booted = cli("bootstrap", "--json")
        assert [path for path, _ in server.requests] == ["/api/v2/deployment/config"]
        text = cli("bootstrap")
    for result in (checked, booted, text):
        assert "tok-owner-7f3k" not in result.all
    rule = {r["rule_id"]: r for r in json.loads(booted.out)["rules"]}["coder.server-env"]
    assert rule["state"] == "drift" and "CODER_AIBRIDGE_ENABLED=true" in rule["before"]
    row = next(line for line in text.out.splitlines() if "coder.server-env" in line)
    assert row.lstrip().startswith("drift") and "CODER_HIDE_AI_TASKS=false" in row and " → " in row
    assert ", 1 drift (not fixed)," in text.out.splitlines()[-1]


def test_bad_coder_url_is_bad_input(home: Path, keyed_env: str, cli, monkeypatch) -> None:
    monkeypatch.setenv("WORKSPACE_AGENT_CODER_URL", "coder.example.com")
    result = cli("check")
    assert result.code == 1
    assert result.err.strip() == (
        "workspace-agent: $WORKSPACE_AGENT_CODER_URL='coder.example.com' is not valid for coder_url: "
        "must be an http:// or https:// URL"
    )
