"""Inputs: precedence flag > env > policy > default, and one clear sentence per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from workspace_agent.config import load_config, policy_path, read_policy
from workspace_agent.errors import AgentError


def test_precedence_flag_over_env_over_policy_over_default(tmp_path: Path) -> None:
    policy = {"agent": {"enforcement_level": "unrestricted", "model": "claude-opus", "ai_assistant": "opencode"}}
    env = {"HOME": str(tmp_path), "ENFORCEMENT_LEVEL": "design-first", "AI_MODEL": "claude-haiku"}
    flags = {"enforcement_level": "standard"}
    config = load_config(flags, env, policy)
    assert config.enforcement_level == "standard"  # flag
    assert config.model == "claude-haiku"  # env beats policy
    assert config.ai_assistant == "opencode"  # policy beats default
    assert config.guardrail_action == "block"  # default


def test_empty_env_value_falls_through_to_policy(tmp_path: Path) -> None:
    """LITELLM_API_KEY='' means 'auto-provision' on the platform, not 'a key that is empty'."""
    config = load_config({}, {"HOME": str(tmp_path), "LITELLM_API_KEY": ""}, {"agent": {"api_key": "sk-from-policy-1234"}})
    assert config.api_key == "sk-from-policy-1234"


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        ({"enforcement_level": "strict"}, {}, "--enforcement-level='strict' is not allowed for enforcement_level: choose one of unrestricted, standard or design-first"),
        ({}, {"AI_ASSISTANT": "copilot"}, "$AI_ASSISTANT='copilot' is not allowed for ai_assistant"),
        ({}, {"AI_GATEWAY_URL": "litellm:4000"}, "$AI_GATEWAY_URL='litellm:4000' is not valid for gateway_url: must be an http:// or https:// URL"),
        ({"home": "relative/home"}, {}, "--home='relative/home' is not valid for home: must be an absolute path"),
        ({"provision_deadline": "-1"}, {}, "--provision-deadline='-1' is not valid for provision_deadline"),
    ],
)
def test_bad_value_is_one_sentence_naming_source_value_and_allowed(flags: dict, env: dict, expected: str, tmp_path: Path) -> None:
    with pytest.raises(AgentError) as info:
        load_config(flags, {"HOME": str(tmp_path), **env}, {})
    assert expected in info.value.message
    assert "\n" not in info.value.message


def test_secret_values_are_never_echoed_in_errors(tmp_path: Path) -> None:
    with pytest.raises(AgentError) as info:
        load_config({"api_key": "sk-abc def-secretvalue"}, {"HOME": str(tmp_path)}, {})
    assert "secretvalue" not in info.value.message
    assert "(hidden)" in info.value.message


def test_policy_from_bad_source_names_the_policy(tmp_path: Path) -> None:
    with pytest.raises(AgentError) as info:
        load_config({}, {"HOME": str(tmp_path)}, {"agent": {"guardrail_action": "shout"}})
    assert info.value.message.startswith("policy [agent].guardrail_action='shout' is not allowed")


def test_unknown_policy_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AgentError, match="unknown setting 'enforcement'"):
        load_config({}, {"HOME": str(tmp_path)}, {"agent": {"enforcement": "standard"}})


def test_policy_file_parsing(tmp_path: Path) -> None:
    good = tmp_path / "policy.toml"
    good.write_text('[agent]\nenforcement_level = "design-first"  # admins set this\n')
    assert read_policy(good, required=True) == {"agent": {"enforcement_level": "design-first"}}
    bad = tmp_path / "bad.toml"
    bad.write_text("[agent\nx = ")
    with pytest.raises(AgentError, match="is not valid TOML"):
        read_policy(bad, required=True)
    assert read_policy(tmp_path / "absent.toml", required=False) == {}
    with pytest.raises(AgentError, match="does not exist"):
        read_policy(tmp_path / "absent.toml", required=True)


def test_policy_path_precedence() -> None:
    assert policy_path("/a.toml", {"WORKSPACE_AGENT_POLICY": "/b.toml"}) == (Path("/a.toml"), True)
    assert policy_path(None, {"WORKSPACE_AGENT_POLICY": "/b.toml"}) == (Path("/b.toml"), True)
    assert policy_path(None, {}) == (Path("/etc/workspace-agent/policy.toml"), False)


@pytest.mark.parametrize(
    ("assistant", "roo", "opencode", "claude"),
    [("all", True, True, True), ("both", True, True, False), ("roo-code", True, False, False), ("opencode", False, True, False), ("claude-code", False, False, True), ("none", False, False, False)],
)
def test_ai_assistant_selects_clients(assistant: str, roo: bool, opencode: bool, claude: bool, tmp_path: Path) -> None:
    config = load_config({"ai_assistant": assistant}, {"HOME": str(tmp_path)}, {})
    assert (config.wants("roo-code"), config.wants("opencode"), config.wants("claude-code")) == (roo, opencode, claude)


def test_drift_settings_are_optional_validated_and_the_secret_stays_hidden(tmp_path: Path) -> None:
    home = {"HOME": str(tmp_path)}
    assert load_config({}, home, {}).drift_server_url == ""  # no server: reporting says what to set
    config = load_config({}, {**home, "DRIFT_ENROLLMENT_SECRET": "enr-Qw7"}, {"agent": {"drift_server_url": "https://drift.internal:8300/"}})
    assert config.drift_server_url == "https://drift.internal:8300"
    assert "enr-Qw7" in config.secrets and "enr-Qw7" not in repr(config)
    with pytest.raises(AgentError) as info:
        load_config({}, {**home, "DRIFT_SERVER_URL": "drift:8300"}, {})
    assert info.value.message == "$DRIFT_SERVER_URL='drift:8300' is not valid for drift_server_url: must be an http:// or https:// URL"
    with pytest.raises(AgentError) as info:
        load_config({"enrollment_secret": "enr Qw7-leak"}, home, {})
    assert "Qw7-leak" not in info.value.message and "(hidden)" in info.value.message
