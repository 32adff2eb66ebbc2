"""What an AI client module declares: the one shape every entry of clients/registry.py has.

A client is something a developer talks to (Roo Code, Zoo Code, OpenCode, Claude Code). The
always-on resources (key file, shell environment, bypass detection, lockdown) are not clients: they
apply whatever `ai_assistant` says and stay in desired.rules().

Standard library only at import: config validation asks the registry for the `ai_assistant`
choices, and that must not pull in the rule engine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from workspace_agent.record import Record

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

if TYPE_CHECKING:  # pragma: no cover
    from workspace_agent.desired import Desired
    from workspace_agent.keysource import KeyResolution
    from workspace_agent.plan import Rule


class PolicyTable(Record):
    """One table of the admin policy file: its key names, and a check of its values.

    `check` gets the table as written (keys already known to be allowed) and raises AgentError
    with a sentence when a value is wrong; it runs once at load, whatever `ai_assistant` is.
    """

    name: str  # the TOML table, e.g. "claude_code"
    keys: tuple[str, ...]
    check: Callable[[dict[str, Any]], None] | None = None


class Client(Record):
    """One AI client: how it is selected, what it manages and which models it uses."""

    name: str  # the `ai_assistant` value that selects this client alone, e.g. "zoo-code"
    title: str  # how people call it, e.g. "Zoo Code"
    assistants: tuple[str, ...]  # every `ai_assistant` value that configures it (its own name included)
    rules: Callable[[Desired, KeyResolution], list[Rule]]
    models: Callable[[Desired], list[tuple[str, str]]]  # (role, LiteLLM model): "model", "small_model"
    paths: Callable[[Desired], tuple[Path, ...]]  # every file its rules may write
    policy: PolicyTable | None = None  # its table in the policy file, if it has one
    settings_keys: tuple[str, ...] = ()  # code-server User settings keys it owns (the lockdown may not set them)
