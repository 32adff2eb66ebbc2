"""OpenCode: the global config (key referenced with `{file:…}`, never inline), the enforcement
instructions file, the root-owned managed layer when the agent may write it, and a warning when
the user's own higher-precedence config overrides what the platform requires.

The review workflows of prompts/review/ become agents in the config's `agent` table (read-only:
edits denied); `instructions` applies to every agent, so the enforcement level stays on top."""

from __future__ import annotations

import json
import os
from pathlib import Path

from workspace_agent.clients.base import Client
from workspace_agent.errors import AgentError

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:  # pragma: no cover  (the registry imports this module to learn CLIENT: keep it light)
    from workspace_agent.desired import Desired
    from workspace_agent.keysource import KeyResolution
    from workspace_agent.plan import ActionRule, Rule
    from workspace_agent.review import ReviewWorkflow

PROVIDER = "litellm"
SCHEMA = "https://opencode.ai/config.json"
# Keys whose value in a user's file would take the platform's gateway, model or prompt away.
GUARDED_KEYS = ("model", "small_model", "enabled_providers", "disabled_providers", "instructions")


def provider_block(desired: Desired) -> dict[str, Any]:
    return {
        "npm": "@ai-sdk/openai-compatible",
        "name": "LiteLLM",
        "options": {"baseURL": desired.gateway_v1, "apiKey": "{file:" + str(desired.paths.key_file) + "}"},
        "models": {m.litellm: {"name": m.name} for m in desired.models},
    }


def review_agent(workflow: ReviewWorkflow) -> dict[str, Any]:
    """One review workflow as an OpenCode agent: primary (Tab) or @mention, never edits files."""
    return {"description": workflow.description, "mode": "all", "prompt": workflow.prompt, "permission": {"edit": "deny"}}


def config_document(desired: Desired) -> dict[str, Any]:
    oc = desired.clients["opencode"]
    return {
        "$schema": SCHEMA,
        "model": f"{PROVIDER}/{desired.model.litellm}",
        "small_model": f"{PROVIDER}/{desired.small_model.litellm}",
        "enabled_providers": [PROVIDER],
        "autoupdate": oc["autoupdate"],
        "share": oc["share"],
        "instructions": [str(desired.paths.opencode_enforcement)],
        "provider": {PROVIDER: provider_block(desired)},
        "agent": {w.slug: review_agent(w) for w in desired.reviews},
    }


def managed_document(desired: Desired) -> dict[str, Any]:
    """What an admin requires, for /etc/opencode (highest precedence, root-owned)."""
    doc = config_document(desired)
    return {k: doc[k] for k in ("$schema", "enabled_providers", "autoupdate", "share", "instructions", "provider")}


def managed_writable(directory: Path) -> bool:
    probe = directory if directory.exists() else directory.parent
    return probe.is_dir() and os.access(probe, os.W_OK)


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def rules(desired: Desired, key: KeyResolution) -> list[Rule]:
    from workspace_agent.resources import generated_file

    paths = desired.paths
    found: list[Rule] = [
        generated_file("opencode.enforcement", paths.opencode_enforcement, desired.prompt, title="instructions file")
    ]
    if key.key is not None:  # the config references the key file: without it OpenCode will not start
        found.append(generated_file("opencode.config", paths.opencode_config, _dump(config_document(desired))))
    managed = desired.config.managed_dir
    if managed_writable(managed):
        found.append(generated_file("opencode.managed", managed / "opencode.json", _dump(managed_document(desired))))
    else:
        found.append(_override_rule(desired))
    return found


def user_overrides(desired: Desired) -> list[str]:
    """'file: key' for every platform-required key a higher-precedence user config changes."""
    from workspace_agent import fsio, jsonc

    ours = config_document(desired)
    found: list[str] = []
    candidates = [desired.paths.opencode_dir / "opencode.jsonc"]
    if os.environ.get("OPENCODE_CONFIG"):
        candidates.append(Path(os.environ["OPENCODE_CONFIG"]))
    for path in candidates:
        fact = fsio.read_fact(path)
        if fact.text is None:
            continue
        try:
            theirs = jsonc.loads(fact.text)
        except jsonc.JsoncError as exc:
            raise AgentError(f"{path} is not valid JSONC ({exc}); OpenCode will refuse to start") from None
        for key in GUARDED_KEYS:
            if key in theirs and theirs[key] != ours.get(key):
                found.append(f"{desired.paths.show(path)}: {key}")
        their_provider = (theirs.get("provider") or {}).get(PROVIDER)
        if their_provider is not None and their_provider != ours["provider"][PROVIDER]:
            found.append(f"{desired.paths.show(path)}: provider.{PROVIDER}")
    return found


def _override_rule(desired: Desired) -> ActionRule:
    """Report-only: the user's own file is theirs; we say what it overrides."""
    from workspace_agent.plan import ActionFact, ActionRule


    def observe() -> ActionFact:
        found = user_overrides(desired)
        return ActionFact(not found, before=", ".join(found) or None, after="not overridden" if found else None)

    return ActionRule(
        "opencode.user-override",
        str(desired.paths.opencode_dir / "opencode.jsonc"),
        observe,
        fix=None,
        title="user config overriding the platform's provider/model",
    )


def models(desired: Desired) -> list[tuple[str, str]]:
    return [("model", desired.model.litellm), ("small_model", desired.small_model.litellm)]


def paths(desired: Desired) -> tuple[Path, ...]:
    p = desired.paths
    return (p.opencode_enforcement, p.opencode_config, desired.config.managed_dir / "opencode.json")


CLIENT = Client(
    name="opencode",
    title="OpenCode",
    assistants=("both", "all", "opencode"),
    rules=rules,
    models=models,
    paths=paths,
)
