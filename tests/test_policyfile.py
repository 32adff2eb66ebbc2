"""policyfile: one schema for the whole policy file, checked at load whatever ai_assistant is."""

from __future__ import annotations

from pathlib import Path

import pytest

from workspace_agent import policyfile
from workspace_agent.errors import AgentError

VALID = """\
[agent]
enforcement_level = "design-first"

[models]
default = "claude-sonnet"
models.claude-sonnet = { litellm = "claude-sonnet-4-5", name = "Claude Sonnet 4.5" }

[lockdown]
forbidden_extensions = ["tabnine.tabnine-vscode"]

[bypass]
extra_names = ["ACME_LLM_KEY"]

[claude_code]
enforcement_level = "workspace"
env = { API_TIMEOUT_MS = "600000" }
"""


def _policy(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"  # conftest points WORKSPACE_AGENT_POLICY here
    path.write_text(text)
    return path


def test_every_table_is_known() -> None:
    assert set(policyfile.tables()) == {"agent", "models", "lockdown", "bypass", "claude_code"}


def test_a_valid_policy_loads(tmp_path: Path, home: Path) -> None:
    _policy(tmp_path, VALID)
    config, policy = policyfile.load({"policy_file": None}, {"HOME": str(home), "WORKSPACE_AGENT_POLICY": str(tmp_path / "policy.toml")})
    assert config.enforcement_level == "design-first" and policy["claude_code"]["enforcement_level"] == "workspace"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[lockdwon]\nforbidden_extensions = []\n", "unknown table [lockdwon] (did you mean 'lockdown'?); the tables are [agent], [bypass], [claude_code], [lockdown], [models]"),
        ("[claude-code]\nenv = {}\n", "unknown table [claude-code] (did you mean 'claude_code'?)"),
        ("[telemetry]\non = false\n", "unknown table [telemetry]; the tables are"),
        ("[lockdown]\nforbidden_extension = []\n", "unknown key 'forbidden_extension' in [lockdown] (did you mean 'forbidden_extensions'?); allowed: settings, forbidden_extensions, fix_workspace_overrides"),
        ("[agent]\ngateway = \"http://x:4000\"\n", "unknown key 'gateway' in [agent] (did you mean 'gateway_url'?)"),
        ("[claude_code]\nenforcement_levle = \"standard\"\n", "unknown key 'enforcement_levle' in [claude_code] (did you mean 'enforcement_level'?)"),
        ("lockdown = 3\n", "[lockdown] must be a table, not a number"),
        ("[claude_code]\nenforcement_level = \"strict\"\n", "[claude_code] enforcement_level = 'strict' is not allowed"),
        ("[models.models]\nclaude-x = { name = \"X\" }\n", "[models].models.claude-x needs litellm ="),
        ("[bypass]\nextra_names = \"ACME\"\n", "[bypass].extra_names must be a list of strings"),
    ],
)
@pytest.mark.parametrize("assistant", ["both", "none", "all"])
def test_a_wrong_policy_stops_every_run_with_one_sentence(
    tmp_path: Path, home: Path, keyed_env: str, cli, text: str, expected: str, assistant: str
) -> None:
    """The same file is wrong whatever ai_assistant is (the [claude_code] table included)."""
    path = _policy(tmp_path, text)
    result = cli("plan", "--ai-assistant", assistant)
    assert result.code == 1 and result.out == ""
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith(f"workspace-agent: policy file {path}: ") and expected in lines[0], lines[0]


def test_self_service_commands_load_the_same_way(tmp_path: Path, home: Path, keyed_env: str, cli) -> None:
    path = _policy(tmp_path, "[lockdwon]\n")
    for command in ("usage", "models", "shell-init"):
        result = cli(command)
        assert result.code == 1 and f"policy file {path}: unknown table [lockdwon]" in result.err, (command, result.err)


def test_check_names_the_file_it_was_given() -> None:
    with pytest.raises(AgentError, match=r"^policy file /x/p.toml: unknown key 'extra_name' in \[bypass\]"):
        policyfile.check({"bypass": {"extra_name": []}}, "/x/p.toml")
