"""Inputs in one place: flags + environment + the admin policy file → (AgentConfig, policy).

The policy file has one schema, checked once at load whatever `ai_assistant` is: the always-on
tables (`[agent]`, `[models]`, `[lockdown]`, `[bypass]`) and each registered client's table
(clients/registry.py). An unknown table or key stops the run with one sentence naming the file,
the table and the nearest valid name; each table's values are checked by the module that owns
them, so a file is valid or invalid for every workspace alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from workspace_agent.clients.base import PolicyTable
from workspace_agent.errors import AgentError

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:  # pragma: no cover
    from workspace_agent.config import AgentConfig

MODELS_KEYS = ("default", "small", "models")


def load(options: dict[str, Any], environ: Mapping[str, str]) -> tuple[AgentConfig, dict[str, Any]]:
    """Read and check the policy file (`policy_file` option, $WORKSPACE_AGENT_POLICY or the
    default path), then merge the settings by precedence. Pops `policy_file` from `options`."""
    from workspace_agent.config import load_config, policy_path, read_policy

    path, required = policy_path(options.pop("policy_file", None), environ)
    policy = read_policy(path, required)
    check(policy, path)
    return load_config(options, environ, policy), policy


def _agent() -> PolicyTable:
    from workspace_agent.config import SETTINGS_BY_NAME

    return PolicyTable("agent", tuple(SETTINGS_BY_NAME))  # values: config.load_config


def _models() -> PolicyTable:
    return PolicyTable("models", MODELS_KEYS, _check_models)


def _lockdown() -> PolicyTable:
    from workspace_agent.lockdown import spec

    return PolicyTable("lockdown", spec.POLICY_KEYS, spec.check_policy)


def _bypass() -> PolicyTable:
    from workspace_agent.clients import bypass

    return PolicyTable("bypass", bypass.POLICY_KEYS, bypass.check_policy)


# The always-on tables, each built on demand: the owner is imported only when the file has its table.
ALWAYS_ON: dict[str, Callable[[], PolicyTable]] = {"agent": _agent, "models": _models, "lockdown": _lockdown, "bypass": _bypass}


def _client_tables() -> dict[str, PolicyTable]:
    from workspace_agent.clients import registry

    return {c.policy.name: c.policy for c in registry.clients() if c.policy is not None}


def table_names() -> tuple[str, ...]:
    return tuple(sorted((*ALWAYS_ON, *_client_tables())))


def tables() -> dict[str, PolicyTable]:
    """Every table the policy file may have, by name."""
    return {**{name: build() for name, build in ALWAYS_ON.items()}, **_client_tables()}


def check(policy: Mapping[str, Any], path: Path | str) -> None:
    """AgentError with one sentence for the first unknown table or key, or bad value."""
    if not policy:
        return
    clients = _client_tables()
    for name, table in policy.items():
        schema = ALWAYS_ON[name]() if name in ALWAYS_ON else clients.get(name)
        if schema is None:
            known = table_names()
            raise AgentError(
                f"policy file {path}: unknown table [{name}]{_nearest(name, known)}; the tables are "
                + ", ".join(f"[{t}]" for t in known)
            )
        if not isinstance(table, dict):
            raise AgentError(f"policy file {path}: [{name}] must be a table, not a {_kind(table)}")
        for key in table:
            if key not in schema.keys:
                hint = _nearest(key, schema.keys)
                raise AgentError(
                    f"policy file {path}: unknown key {key!r} in [{name}]{hint}; allowed: " + ", ".join(schema.keys)
                )
        if schema.check is not None:
            try:
                schema.check(table)
            except AgentError as exc:
                raise AgentError(_in_file(exc.message, path), exc.exit_code) from None


def _nearest(name: str, candidates: Any) -> str:
    import difflib

    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _in_file(message: str, path: Path | str) -> str:
    """An owner's sentence, with the file it is about."""
    if message.startswith("policy file:"):
        return f"policy file {path}:" + message[len("policy file:") :]
    return f"policy file {path}: {message}"


def _kind(value: Any) -> str:
    return {str: "string", bool: "boolean", int: "number", float: "number", list: "list"}.get(type(value), type(value).__name__)


def _check_models(table: dict[str, Any]) -> None:
    for key in ("default", "small"):
        if key in table and not isinstance(table[key], str):
            raise AgentError(f"policy file: [models].{key} must be a template model value (a string)")
    entries = table.get("models", {})
    if not isinstance(entries, dict):
        raise AgentError("policy file: [models].models must be a table of models")
    for template, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("litellm"), str) or not entry["litellm"]:
            raise AgentError(
                f"policy file: [models].models.{template} needs litellm = \"<LiteLLM model name>\" "
                '(e.g. { litellm = "claude-sonnet-4-5", name = "Claude Sonnet 4.5" })'
            )
        unknown = sorted(set(entry) - {"litellm", "name"})
        if unknown or not isinstance(entry.get("name", ""), str):
            raise AgentError(f"policy file: [models].models.{template} may only have litellm and name (strings)")
