"""Layer 2: the locked VS Code keys in code-server's User settings, and the places that override them.

* One `json_key` rule per locked key on the User settings.json (`vscode.setting.<key>`): merged
  key by key at every start, the user's own keys, comments and layout kept.
* Machine settings win over User settings in code-server, so a locked key set to another value
  there is put back too (`vscode.machine-override`); keys the file does not set are not added.
* Repositories' `.vscode/settings.json` and `*.code-workspace` are the user's: an override there
  is reported with file, key and value (`vscode.workspace-overrides`); the admin policy's
  `[lockdown].fix_workspace_overrides = true` makes bootstrap rewrite them instead.
"""

from __future__ import annotations

import json
from pathlib import Path

from workspace_agent import jsonc
from workspace_agent.errors import AgentError
from workspace_agent.lockdown import overrides
from workspace_agent.lockdown.spec import Lockdown
from workspace_agent.paths import Paths
from workspace_agent.plan import ActionFact, ActionRule, FileRule, Rule
from workspace_agent.resources import json_key

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

MAX_REPORT_CHARS = 3500  # the wire format allows 4000 per value


def show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def rules(lockdown: Lockdown, paths: Paths, roots: list[Path]) -> list[Rule]:
    found: list[Rule] = [
        json_key(f"vscode.setting.{key}", paths.user_settings, key, value) for key, value in lockdown.settings.items()
    ]
    found.append(machine_rule(lockdown, paths.machine_settings))
    found.append(workspace_rule(lockdown, roots, paths))
    return found


def machine_rule(lockdown: Lockdown, path: Path) -> FileRule:
    locked = lockdown.settings

    def parse(text: str) -> dict[str, Any]:
        try:
            return jsonc.loads(text)
        except jsonc.JsoncError as exc:
            raise AgentError(f"{path} is not valid JSONC ({exc}); left untouched: fix or remove it") from None

    def render(current: str | None) -> str | None:
        if current is None:
            return None  # no Machine settings: nothing can override
        text = current
        for key, _value in overrides.differing(parse(current), locked):
            text = jsonc.set_key(text, key, locked[key])
        return text

    def summarize(text: str | None) -> str:
        if text is None:
            return "no Machine settings"
        try:
            found = overrides.differing(parse(text), locked)
        except AgentError:
            return "(unreadable)"
        return ", ".join(f"{key}={show(value)}" for key, value in found) or "no override"

    return FileRule(
        "vscode.machine-override", path, render, summarize=summarize,
        title="Machine settings overriding the lockdown", user_file=True,
    )


def workspace_rule(lockdown: Lockdown, roots: list[Path], paths: Paths) -> ActionRule:
    locked = lockdown.settings

    def scan() -> tuple[list[overrides.Found], bool]:
        walk = overrides.settings_files(roots, lockdown.audit)
        found = [overrides.read_overrides(path, locked) for path in walk.files]
        return [f for f in found if f.overrides or f.problem], walk.truncated

    def observe() -> ActionFact:
        found, truncated = scan()
        note = None
        if truncated:
            note = f"stopped after {lockdown.audit.max_dirs} directories: narrow project_roots to audit everything"
        if not found:
            return ActionFact(True, message=note)
        report = describe(found, paths)
        if lockdown.fix_workspace_overrides:
            return ActionFact(False, report, "locked values", message=note)
        hint = "reported only (repositories are the user's); the admin policy can set [lockdown].fix_workspace_overrides = true"
        return ActionFact(False, report, "no override", message="; ".join(m for m in (note, hint) if m))

    def fix() -> None:
        found, _truncated = scan()
        unreadable = [f for f in found if f.problem]
        for item in found:
            if item.overrides:
                overrides.rewrite(item, locked)
        if unreadable:
            raise AgentError("could not check " + describe(unreadable, paths))

    target = ":".join("~" if root == paths.home else str(root) for root in roots)
    return ActionRule(
        "vscode.workspace-overrides",
        target,
        observe,
        fix if lockdown.fix_workspace_overrides else None,
        title="repositories' settings overriding the lockdown",
    )


def describe(found: list[overrides.Found], paths: Paths) -> str:
    """'~/p/.vscode/settings.json: chat.disableAIFeatures=false; …', bounded for the report."""
    parts: list[str] = []
    for item in found:
        what = item.problem or ", ".join(f"{key}={show(value)}" for key, value in item.overrides)
        parts.append(f"{paths.show(item.path)}: {what}")
    text = ""
    for index, part in enumerate(parts):
        candidate = part if not text else f"{text}; {part}"
        if len(candidate) > MAX_REPORT_CHARS:
            head = text or part[:MAX_REPORT_CHARS] + "…"
            more = len(parts) - index - (0 if text else 1)
            return f"{head}; … and {more} more file(s)" if more else head
        text = candidate
    return text
