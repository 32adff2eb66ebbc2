"""Claude Code CLI: through LiteLLM's Anthropic-format endpoint, with the key never in its files.

Claude Code reads settings from managed-settings.json (/etc/claude-code on Linux: highest
precedence, for what an admin requires) and ~/.claude/settings.json (the user's). The agent merges
the keys it owns into the managed file when it may write there, else into the user's file,
keeping every other key and comment:

* `apiKeyHelper`: a command of this project that prints the key from the 0600 key file, so the
  key is in no Claude file (Claude sends it as `Authorization: Bearer` and `X-Api-Key`);
* `env`: `ANTHROPIC_BASE_URL` = the gateway (LiteLLM serves the Messages API at `/v1/messages`
  and maps model names to any provider, unlike its `/anthropic` pass-through, which forwards to
  Anthropic itself); `ANTHROPIC_AUTH_TOKEN`/`ANTHROPIC_API_KEY` blanked, because either one in
  the process environment would win over `apiKeyHelper` (measured with Claude Code 2.1.332:
  the platform template exports `ANTHROPIC_AUTH_TOKEN=ollama`); model aliases; no telemetry;
* `model`: the workspace's model.

The enforcement text goes to ~/.claude/rules/ (Claude Code adds every file there to its system
prompt). Which level Claude Code gets is a policy choice (`[claude_code] enforcement_level`), by
default the template's "unrestricted".
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

from workspace_agent.clients.base import Client, PolicyTable
from workspace_agent.clients.opencode import managed_writable
from workspace_agent.config import ENFORCEMENT_LEVELS
from workspace_agent.errors import AgentError

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:  # pragma: no cover  (the registry imports this module to learn CLIENT: keep it light)
    from workspace_agent.desired import Desired
    from workspace_agent.keysource import KeyResolution
    from workspace_agent.plan import FileRule, Rule

MANAGED_FILE = "managed-settings.json"
WORKSPACE_LEVEL = "workspace"

# The documented settings keys this module writes, with their JSON types (code.claude.com/docs
# settings page; Claude Code's own schema rejects a file whose known keys have the wrong type).
DOCUMENTED_KEYS: dict[str, type] = {"apiKeyHelper": str, "env": dict, "model": str}


POLICY_KEYS = ("enforcement_level", "env")


def check_policy(table: dict[str, Any]) -> None:
    """The policy file's [claude_code] table: checked at load, whatever ai_assistant is."""
    if not isinstance(table, dict):
        raise AgentError("policy file: [claude_code] must be a table")
    unknown = sorted(set(table) - set(POLICY_KEYS))
    if unknown:
        raise AgentError(f"policy file: unknown key {unknown[0]!r} in [claude_code]; allowed: {', '.join(POLICY_KEYS)}")
    level = table.get("enforcement_level", WORKSPACE_LEVEL)
    if level != WORKSPACE_LEVEL and level not in ENFORCEMENT_LEVELS:
        allowed = ", ".join((*ENFORCEMENT_LEVELS, WORKSPACE_LEVEL))
        raise AgentError(f"[claude_code] enforcement_level = {level!r} is not allowed: choose one of {allowed}")
    env = table.get("env", {})
    if not isinstance(env, dict):
        raise AgentError("policy file: [claude_code].env must be a table of environment variables")
    for name, value in env.items():
        if not isinstance(value, str):
            raise AgentError(
                f"policy file: [claude_code] env.{name}: environment values must be strings, got {type(value).__name__}"
            )


def _section(desired: Desired) -> dict[str, Any]:
    """settings/clients.toml [claude_code], with the policy file's [claude_code] on top."""
    shipped = desired.clients.get("claude_code", {})
    policy = desired.policy.get("claude_code", {})
    check_policy(policy)
    env = {**shipped.get("env", {}), **policy.get("env", {})}
    return {**shipped, **{k: v for k, v in policy.items() if k != "env"}, "env": env}


def enforcement_level(desired: Desired) -> str:
    """The level whose instructions Claude Code gets (the policy's choice, or the workspace's)."""
    level = _section(desired).get("enforcement_level", WORKSPACE_LEVEL)
    if level == WORKSPACE_LEVEL:
        return desired.config.enforcement_level
    if level not in ENFORCEMENT_LEVELS:
        allowed = ", ".join((*ENFORCEMENT_LEVELS, WORKSPACE_LEVEL))
        raise AgentError(f"[claude_code] enforcement_level = {level!r} is not allowed: choose one of {allowed}")
    return str(level)


def helper_command(desired: Desired) -> str:
    """The apiKeyHelper command (run by /bin/sh): this interpreter, this project, the key file."""
    argv = [sys.executable, "-m", "workspace_agent", "key", "--print", "--file", str(desired.paths.key_file)]
    return shlex.join(argv)


def environment(desired: Desired) -> dict[str, str]:
    section = _section(desired)
    by_template = {m.template: m.litellm for m in desired.models}
    env: dict[str, str] = {
        "ANTHROPIC_BASE_URL": desired.config.gateway_url,
        "ANTHROPIC_AUTH_TOKEN": "",  # a token or key inherited from the shell would beat apiKeyHelper
        "ANTHROPIC_API_KEY": "",
    }
    for variable, template in section.get("model_aliases", {}).items():
        if template in by_template:
            env[variable] = by_template[template]
    env.update(section.get("env", {}))
    return env


def settings_document(desired: Desired) -> dict[str, Any]:
    """The keys the agent owns in Claude Code's settings (merged; never the whole file)."""
    return {"apiKeyHelper": helper_command(desired), "env": environment(desired), "model": desired.model.litellm}


def validate(document: dict[str, Any]) -> list[str]:
    """Problems with a settings document against the documented keys and types ([] = valid)."""
    problems: list[str] = []
    for key, value in document.items():
        if key == "$schema":
            continue
        expected = DOCUMENTED_KEYS.get(key)
        if expected is None:
            problems.append(f"{key}: not a documented Claude Code setting")
        elif not isinstance(value, expected):
            problems.append(f"{key}: expected {expected.__name__}, got {type(value).__name__}")
    for name, value in (document.get("env") or {}).items():
        if not isinstance(value, str):
            problems.append(f"env.{name}: environment values must be strings, got {type(value).__name__}")
    return problems


def strict_json_rule(path: Path) -> FileRule:
    """Claude Code parses settings as strict JSON: a comment or trailing comma makes it ignore the
    whole file (measured with 2.1.332: "Invalid or malformed JSON"), and with it our keys."""
    from workspace_agent.plan import FileRule


    def render(current: str | None) -> str | None:
        if current is not None and current.strip():
            try:
                json.loads(current)
            except json.JSONDecodeError as exc:
                raise AgentError(
                    f"{path} is not strict JSON (line {exc.lineno}: {exc.msg}); Claude Code ignores the whole "
                    "file then: remove its comments and trailing commas"
                ) from None
        return current

    return FileRule("claude.settings-json", path, render, title="strict JSON")


def settings_file(desired: Desired) -> Path:
    """The managed file when the agent may write it (admin scope), else the user's file."""
    managed = desired.config.claude_managed_dir
    return managed / MANAGED_FILE if managed_writable(managed) else desired.paths.claude_settings


def rules(desired: Desired, key: KeyResolution) -> list[Rule]:
    from workspace_agent import data
    from workspace_agent.resources import generated_file, json_entries, json_key

    document = settings_document(desired)
    problems = validate(document)
    if problems:
        raise AgentError("the Claude Code settings would be invalid: " + "; ".join(problems) + " (check [claude_code])")
    target = settings_file(desired)
    prompt = data.prompt_text(enforcement_level(desired))
    return [
        strict_json_rule(target),
        json_key("claude.api-key-helper", target, "apiKeyHelper", document["apiKeyHelper"], title="key from the key file"),
        json_entries("claude.env", target, "env", document["env"], title="gateway, models, no telemetry"),
        json_key("claude.model", target, "model", document["model"]),
        generated_file("claude.rules", desired.paths.claude_rule_file, prompt or None, title="enforcement rule file"),
    ]


def models(desired: Desired) -> list[tuple[str, str]]:
    """The workspace's model, and the one its `haiku` alias names (Claude Code's background model)."""
    found = [("model", desired.model.litellm)]
    small = environment(desired).get("ANTHROPIC_DEFAULT_HAIKU_MODEL")
    if small:
        found.append(("small_model", small))
    return found


def paths(desired: Desired) -> tuple[Path, ...]:
    return (settings_file(desired), desired.paths.claude_rule_file)


CLIENT = Client(
    name="claude-code",
    title="Claude Code",
    assistants=("all", "claude-code"),
    rules=rules,
    models=models,
    paths=paths,
    policy=PolicyTable("claude_code", POLICY_KEYS, check_policy),
)
