"""The workspace's virtual key on disk: one 0600 file that every client references."""

from __future__ import annotations

from workspace_agent.desired import Desired
from workspace_agent.errors import AgentError
from workspace_agent.keysource import KeyResolution
from workspace_agent.plan import FileRule, Rule

PENDING_TEXT = "(the virtual key bootstrap will get from the key provisioner)\n"


def rules(desired: Desired, key: KeyResolution) -> list[Rule]:
    def render(current: str | None) -> str:
        if key.key is not None:
            return key.key + "\n"
        if current is not None and current.strip():
            return current  # keep what is there; only its mode is checked
        if key.pending:
            return PENDING_TEXT
        raise AgentError(key.problem or "no virtual key")

    return [FileRule("key.file", desired.paths.key_file, render, mode=0o600, secret=True, title="virtual key (0600)")]
