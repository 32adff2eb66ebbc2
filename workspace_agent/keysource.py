"""Where this run's virtual key comes from: pasted > provisioner > the stored copy.

A pasted key always wins. bootstrap asks the provisioner (bounded retries) and falls back to the
key stored by an earlier start when the provisioner cannot be reached, saying so. plan and check
never touch the network: they use the pasted or stored key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from workspace_agent import fsio
from workspace_agent.config import AgentConfig
from workspace_agent.errors import AgentError
from workspace_agent.paths import Paths
from workspace_agent.redact import mask

Source = Literal["pasted", "provisioner", "stored", "none"]


@dataclass(frozen=True)
class KeyResolution:
    key: str | None
    source: Source
    reused: bool | None = None  # what the provisioner said
    note: str | None = None  # a warning worth showing (fallback used, mode fixed, ...)
    problem: str | None = None  # why there is no key
    pending: bool = False  # no key yet, but bootstrap would ask the provisioner (plan/check)
    identity: str | None = None  # provisioner only: coder-agent-token (Coder vouched) or provisioner-secret

    @property
    def masked(self) -> str | None:
        return mask(self.key) if self.key else None

    def describe(self) -> str:
        if self.key is None:
            return f"no key: {self.problem}"
        detail = {"pasted": "pasted by hand", "stored": "stored copy", "none": ""}.get(self.source, "")
        if self.source == "provisioner":
            detail = "provisioner, existing key reused" if self.reused else "provisioner, new key"
            detail += ", workspace verified by Coder" if self.identity == "coder-agent-token" else ", shared secret only"
        return f"{self.masked} ({detail})"


def stored_key(paths: Paths) -> tuple[str | None, str | None]:
    """The key saved by an earlier run, and a warning when its file is readable by others."""
    try:
        fact = fsio.read_fact(paths.key_file, max_bytes=4096)
    except AgentError as exc:
        return None, exc.message
    if fact.text is None or not fact.text.strip():
        return None, None
    warning = None
    if fact.mode is not None and fact.mode & 0o077:
        warning = f"{paths.key_file} was readable by others (mode {fact.mode:04o}); it is set back to 0600"
    return fact.text.strip(), warning


def resolve_key(
    config: AgentConfig, paths: Paths, *, network: bool, log: Callable[[str], None] = lambda _m: None
) -> KeyResolution:
    if config.api_key:
        return KeyResolution(config.api_key, "pasted")
    stored, warning = stored_key(paths)
    if not network:
        if stored:
            return KeyResolution(stored, "stored", note=warning)
        return KeyResolution(
            None,
            "none",
            problem="no key stored yet: run `workspace-agent bootstrap` (it asks the key provisioner)",
            pending=True,
        )
    missing = [
        name
        for name, value in (
            ("CODER_WORKSPACE_ID", config.workspace_id),
            ("CODER_WORKSPACE_OWNER", config.owner),
            ("PROVISIONER_SECRET", config.provisioner_secret),
        )
        if not value
    ]
    if missing:
        problem = f"cannot ask the key provisioner: {', '.join(missing)} not set (or paste a key in LITELLM_API_KEY)"
        if stored:
            return KeyResolution(stored, "stored", note=f"{problem}; using the stored key", problem=None)
        return KeyResolution(None, "none", problem=problem)
    from workspace_agent.provisioner import KeyRequest, fetch_key

    request = KeyRequest(
        workspace_id=config.workspace_id,
        username=config.owner,
        workspace_name=config.workspace_name,
        enforcement_level=config.enforcement_level,
        guardrail_action=config.guardrail_action,
    )
    try:
        got = fetch_key(
            config.provisioner_url,
            config.provisioner_secret,
            request,
            deadline=config.provision_deadline,
            log=log,
            agent_token=config.agent_token,
        )
    except AgentError as exc:
        if stored:
            return KeyResolution(stored, "stored", note=f"{exc.message}; using the key stored by an earlier start")
        return KeyResolution(None, "none", problem=exc.message)
    note = warning
    if stored and stored != got.key:
        note = "the provisioner returned a different key than the stored one; the stored key is replaced"
    return KeyResolution(got.key, "provisioner", reused=got.reused, note=note, identity=got.identity)
