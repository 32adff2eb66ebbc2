"""The two kinds of file resource: a whole generated file, and one key inside a JSONC file."""

from __future__ import annotations

import json
from pathlib import Path

from workspace_agent import jsonc
from workspace_agent.errors import AgentError
from workspace_agent.plan import FileRule

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any


def generated_file(
    rule_id: str, path: Path, content: str | None, *, mode: int | None = None, secret: bool = False, title: str = ""
) -> FileRule:
    """A file the agent owns whole: its text must be exactly `content` (None: must be absent)."""
    return FileRule(rule_id, path, lambda _current: content, mode=mode, secret=secret, title=title)


_UNSET = object()


def _key_value(text: str | None, key: str, path: Path) -> Any:
    if text is None:
        return _UNSET
    try:  # only this key's value is parsed: a settings.json of 400,000 keys is indexed, not loaded
        return jsonc.get_key(text, key, _UNSET)
    except jsonc.JsoncError as exc:
        raise AgentError(f"{path} is not valid JSONC ({exc}); left untouched: fix or remove it") from None


def _same(found: Any, value: Any) -> bool:
    """JSON equality: `1` is not `true` (VS Code ignores a number where a boolean is required)."""
    return found is not _UNSET and json.dumps(found, sort_keys=True) == json.dumps(value, sort_keys=True)


def json_key(rule_id: str, path: Path, key: str, value: Any, *, title: str = "") -> FileRule:
    """One top-level key of a JSONC settings file, merged in place (the user's other keys,
    comments and formatting stay)."""

    def render(current: str | None) -> str:
        if _same(_key_value(current, key, path), value):
            return current or ""
        return jsonc.set_key(current or "", key, value)

    def summarize(text: str | None) -> str:
        try:
            found = _key_value(text, key, path)
        except AgentError:
            return "(unreadable)"
        return "(unset)" if found is _UNSET else json.dumps(found, ensure_ascii=False, sort_keys=True)

    return FileRule(
        rule_id, path, render, summarize=summarize, title=title or f"{key} = {json.dumps(value)}", user_file=True
    )


def json_entries(rule_id: str, path: Path, key: str, entries: dict[str, Any], *, title: str = "") -> FileRule:
    """Some entries inside one top-level object of a JSONC file (e.g. Claude Code's `env`): ours
    are set, the user's other entries stay. A value of the wrong type is an error, not replaced."""

    def current_object(text: str | None) -> dict[str, Any]:
        found = _key_value(text, key, path)
        if found is _UNSET:
            return {}
        if not isinstance(found, dict):
            raise AgentError(f"{path}: {key!r} must be an object, not {type(found).__name__}; fix or remove it")
        return found

    def render(current: str | None) -> str:
        found = current_object(current)
        if all(k in found and found[k] == v for k, v in entries.items()):
            return current or ""
        return jsonc.set_key(current or "", key, {**found, **entries})

    def summarize(text: str | None) -> str:
        try:
            found = current_object(text)
        except AgentError:
            return "(unreadable)"
        ours = {k: found[k] for k in entries if k in found}
        return json.dumps(ours, ensure_ascii=False, sort_keys=True) if ours else "(unset)"

    return FileRule(
        rule_id, path, render, summarize=summarize, title=title or f"{key}: {len(entries)} entries", user_file=True
    )
