"""What the lockdown requires: settings/lockdown.toml with the policy's [lockdown] table on top.

Everything the lockdown enforces is data (the shipped file, extended by the admin's policy); this
module only validates it and derives `extensions.allowed` from the forbidden ids, so the deny list
and the removal list can never disagree. A bad policy value is one sentence naming the key.
"""

from __future__ import annotations

import json
import re

from workspace_agent import data
from workspace_agent.errors import AgentError
from workspace_agent.record import Record

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

POLICY_KEYS = ("settings", "forbidden_extensions", "fix_workspace_overrides", "remove_builtin_copilot")
DERIVED_KEY = "extensions.allowed"
_EXTENSION_ID = re.compile(r"^[a-z0-9][a-z0-9-]*\.[a-z0-9][a-z0-9._-]*$")


class EnvRequirement(Record):
    """One Coder server environment variable and the value the platform requires."""

    name: str
    value: str
    also_named: tuple[str, ...]  # other names of the same option (a rename's alias)
    config_paths: tuple[str, ...]  # where /api/v2/deployment/config shows it (dotted, under "config")
    why: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.also_named)


class AuditLimits(Record):
    """How far the search for repositories' settings goes (it runs at every check)."""

    max_depth: int
    max_dirs: int
    skip_dirs: frozenset[str]
    skip_hidden: bool


class Lockdown(Record):
    settings: dict[str, Any]  # every locked User setting, extensions.allowed included
    forbidden: tuple[str, ...]  # lower-case extension ids
    fix_workspace_overrides: bool
    audit: AuditLimits
    coder_env: tuple[EnvRequirement, ...]
    remove_builtin_copilot: bool = False  # delete code-server's built-in Copilot at run time where allowed

    def as_data(self) -> dict[str, Any]:
        """Plain data for the desired-state fingerprint."""
        return {
            "settings": self.settings,
            "forbidden": list(self.forbidden),
            "fix_workspace_overrides": self.fix_workspace_overrides,
            "coder_env": [(e.name, e.value) for e in self.coder_env],
            **({"remove_builtin_copilot": True} if self.remove_builtin_copilot else {}),  # old fingerprints stay
        }


def load(policy: dict[str, Any]) -> Lockdown:
    """The shipped lockdown with the policy's [lockdown] table applied."""
    return build(data.settings_file("lockdown"), policy.get("lockdown", {}))


def check_policy(table: dict[str, Any]) -> None:
    """The policy file's [lockdown] table, checked at load (policyfile.py)."""
    build(data.settings_file("lockdown"), table)


def build(shipped: dict[str, Any], extra: Any) -> Lockdown:
    if not isinstance(extra, dict):
        raise AgentError("policy file: [lockdown] must be a table")
    unknown = sorted(set(extra) - set(POLICY_KEYS))
    if unknown:
        raise AgentError(
            f"policy file: unknown key {unknown[0]!r} in [lockdown]; allowed: {', '.join(POLICY_KEYS)}"
        )
    shipped_settings = shipped.get("vscode", {}).get("settings", {})
    settings = {**_settings(shipped_settings, "settings/lockdown.toml [vscode.settings]")}
    settings.update(_settings(extra.get("settings", {}), "policy file: [lockdown].settings"))

    extensions = shipped.get("extensions", {})
    forbidden = _ids(extensions.get("forbidden", []), "settings/lockdown.toml [extensions].forbidden")
    for ext_id in _ids(extra.get("forbidden_extensions", []), "policy file: [lockdown].forbidden_extensions"):
        if ext_id not in forbidden:
            forbidden.append(ext_id)
    allowed: dict[str, bool] = {ext_id: False for ext_id in forbidden}
    allowed["*"] = bool(extensions.get("allow_others", True))
    settings[DERIVED_KEY] = allowed

    fix = _switch(extra, "fix_workspace_overrides")
    remove = _switch(extra, "remove_builtin_copilot")
    return Lockdown(settings, tuple(forbidden), fix, _limits(shipped.get("workspace_audit", {})), _env(shipped), remove)


def _switch(extra: dict[str, Any], name: str) -> bool:
    value = extra.get(name, False)
    if not isinstance(value, bool):
        raise AgentError(f"policy file: [lockdown].{name}={value!r} must be true or false")
    return value


def _settings(table: Any, where: str) -> dict[str, Any]:
    if not isinstance(table, dict):
        raise AgentError(f"{where} must be a table of VS Code keys")
    for key, value in table.items():
        if "." not in key and not (key.startswith("[") and key.endswith("]")):
            raise AgentError(
                f"{where}: {key!r} is not a VS Code setting key; quote dotted keys in TOML "
                f'("editor.fontSize" = 14), or TOML nests them'
            )
        if key == DERIVED_KEY:
            raise AgentError(f"{where}: {DERIVED_KEY} is built from the forbidden extension ids; add ids instead")
        owner = _client_owning(key)
        if owner:
            raise AgentError(f"{where}: {key} is managed by the {owner} rules; remove it here")
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise AgentError(f"{where}: the value of {key!r} is not a JSON value (dates are not allowed)") from None
    return dict(table)


def _client_owning(key: str) -> str | None:
    """The client whose rules write this User settings key (clients/registry.py), if any."""
    from workspace_agent.clients.registry import clients

    return next((client.title for client in clients() if key in client.settings_keys), None)


def _ids(values: Any, where: str) -> list[str]:
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise AgentError(f"{where} must be a list of extension ids (publisher.name)")
    ids: list[str] = []
    for value in values:
        ext_id = value.strip().lower()
        if not _EXTENSION_ID.match(ext_id):
            raise AgentError(f"{where}: {value!r} is not an extension id (publisher.name, e.g. github.copilot)")
        if ext_id not in ids:
            ids.append(ext_id)
    return ids


def _limits(table: dict[str, Any]) -> AuditLimits:
    return AuditLimits(
        max_depth=int(table.get("max_depth", 4)),
        max_dirs=int(table.get("max_dirs", 5000)),
        skip_dirs=frozenset(table.get("skip_dirs", ["node_modules", ".git"])),
        skip_hidden=bool(table.get("skip_hidden", True)),
    )


def _env(shipped: dict[str, Any]) -> tuple[EnvRequirement, ...]:
    return tuple(
        EnvRequirement(
            name=str(item["name"]),
            value=str(item["value"]),
            also_named=tuple(item.get("also_named", ())),
            config_paths=tuple(item.get("config_paths", ())),
            why=str(item.get("why", "")),
        )
        for item in shipped.get("coder_server", {}).get("env", [])
    )
