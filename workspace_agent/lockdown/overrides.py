"""Where a repository can override the locked User settings, and what it overrides.

A folder's `.vscode/settings.json` and a `*.code-workspace` file's `settings` object win over
User settings for that folder, so a repository can switch chat back on. This module finds those
files under the project roots (a bounded walk: it runs at every check) and lists the locked keys
they set to another value. Reading only; `rewrite` is the admin-enabled fix.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from workspace_agent import fsio, jsonc
from workspace_agent.errors import AgentError
from workspace_agent.lockdown.spec import AuditLimits
from workspace_agent.record import Record

TYPE_CHECKING = False  # `typing` costs 2 ms to import on every check; type checkers take this as True
if TYPE_CHECKING:
    from typing import Any

WORKSPACE_SUFFIX = ".code-workspace"
MAX_SETTINGS_BYTES = 1024 * 1024


def same(a: Any, b: Any) -> bool:
    """JSON equality that tells `true` from `1` (VS Code ignores a 1 where a boolean is required)."""
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def differing(values: dict[str, Any], locked: dict[str, Any]) -> list[tuple[str, Any]]:
    """(key, value) for every locked key that `values` sets to something else."""
    return [(key, values[key]) for key in locked if key in values and not same(values[key], locked[key])]


def project_roots(setting: str, home: Path) -> list[Path]:
    """`project_roots` (':'-separated, `~` allowed; empty: the home directory) as absolute paths."""
    roots: list[Path] = []
    for raw in (part.strip() for part in setting.split(os.pathsep)):
        if not raw:
            continue
        if raw == "~" or raw.startswith("~/"):
            path = home / raw[2:] if raw != "~" else home
        elif raw.startswith("/"):
            path = Path(raw)
        else:
            raise AgentError(f"project_roots: {raw!r} is not an absolute path (or ~/…); separate roots with ':'")
        if path not in roots:
            roots.append(path)
    return roots or [home]


class Found(Record):
    """What one workspace settings file overrides (or why it could not be read)."""

    path: Path
    overrides: list[tuple[str, Any]]
    problem: str | None = None

    @property
    def nested(self) -> bool:
        return self.path.name.endswith(WORKSPACE_SUFFIX)


class Walk(Record):
    files: list[Path]
    truncated: bool  # the directory budget ran out before the walk finished


def settings_files(roots: list[Path], limits: AuditLimits) -> Walk:
    """Every `.vscode/settings.json` and `*.code-workspace` under the roots, within the limits.

    Symbolic links to directories are not followed (no loops, no escaping the roots); hidden and
    skipped directories are not entered, but each folder's own `.vscode/settings.json` is read.
    """
    found: list[Path] = []
    stack = [(root, 0) for root in reversed(roots)]
    visited = 0
    while stack:
        directory, depth = stack.pop()
        visited += 1
        if visited > limits.max_dirs:
            return Walk(sorted(set(found)), True)
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        children: list[Path] = []
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if entry.name.endswith(WORKSPACE_SUFFIX) and entry.is_file():
                    found.append(Path(entry.path))
                elif is_dir and entry.name == ".vscode":
                    candidate = Path(entry.path) / "settings.json"
                    if candidate.is_file():
                        found.append(candidate)
                elif is_dir and depth < limits.max_depth and not _skipped(entry.name, limits):
                    children.append(Path(entry.path))
            except OSError:
                continue
        stack.extend((child, depth + 1) for child in reversed(children))
    return Walk(sorted(set(found)), False)


def _skipped(name: str, limits: AuditLimits) -> bool:
    return name in limits.skip_dirs or (limits.skip_hidden and name.startswith("."))


def read_overrides(path: Path, locked: dict[str, Any]) -> Found:
    """The locked keys this file sets to another value; a file we cannot judge says why."""
    try:  # as the home's owner, regular files only, capped (a link to a FIFO or device is refused)
        if path.stat().st_size > MAX_SETTINGS_BYTES:
            return Found(path, [], "larger than 1 MB, not read")
        text = fsio.read_linked(path, MAX_SETTINGS_BYTES) or ""
    except OSError as exc:
        return Found(path, [], f"cannot be read ({exc.strerror or exc})")
    except AgentError as exc:
        return Found(path, [], f"cannot be read ({exc.message})")
    try:
        document = jsonc.loads(text)
    except jsonc.JsoncError as exc:
        return Found(path, [], f"not valid JSONC (line {exc.line}:{exc.column}); VS Code may still apply parts of it")
    if path.name.endswith(WORKSPACE_SUFFIX):
        values = document.get("settings", {})
        if not isinstance(values, dict):
            return Found(path, [], '"settings" is not an object')
    else:
        values = document
    return Found(path, differing(values, locked))


def rewrite(found: Found, locked: dict[str, Any]) -> None:
    """Set each overriding key back to the locked value, keeping the file's other text."""
    fact = fsio.read_fact(found.path, MAX_SETTINGS_BYTES)
    if fact.text is None:
        return
    text = fact.text
    try:
        if found.nested:
            values = jsonc.loads(text).get("settings", {})
            if not isinstance(values, dict):
                raise AgentError(f'{found.path}: "settings" is not an object; left untouched')
            changes = differing(values, locked)
            if changes:
                text = jsonc.set_key(text, "settings", {**values, **{key: locked[key] for key, _ in changes}})
        else:
            for key, _value in differing(jsonc.loads(text), locked):
                text = jsonc.set_key(text, key, locked[key])
    except jsonc.JsoncError as exc:
        raise AgentError(f"{found.path} is not valid JSONC ({exc}); left untouched") from None
    if text != fact.text:
        fsio.atomic_write(found.path, text)
