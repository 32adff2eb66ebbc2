"""The code-server installation: its CLI, and the Copilot Chat it ships built in.

code-server >= 4.13x ships `GitHub.copilot-chat` inside the installation
(`lib/vscode/extensions/copilot`): the CLI cannot uninstall it, so the image deletes it at build
and the agent reports it (`codeserver.builtin-copilot`); with the policy's
`[lockdown].remove_builtin_copilot = true` it deletes it (and the Copilot runtime) itself where it
may write the installation (builtin_removal.py), and otherwise says what remains and why. The installation is found from the binary: through symlinks
(`/usr/bin/code-server` → `/usr/lib/code-server/bin/code-server`), up the parents, or from the
`…/out/node/entry.js` path a wrapper script runs (npm installs).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from workspace_agent.errors import AgentError
from workspace_agent.executables import which
from workspace_agent.lockdown import builtin_removal
from workspace_agent.plan import ActionFact, ActionRule

BUILTIN_COPILOT = builtin_removal.BUILTIN_COPILOT
COPILOT_RUNTIME = builtin_removal.COPILOT_RUNTIME
_ENTRY_JS = r"(/[^\s\"'`$]+)/out/node/entry\.js"  # compiled on first use (re keeps it): a compliant check never needs it
MAX_SCRIPT_BYTES = 64 * 1024
REPORT_ONLY = (
    "report only: the installation is not changed at run time; dockerfile/Dockerfile deletes it. Until then the "
    "locked User settings (vscode.setting.* rules) hide it and keep the Agent Host from starting"
)
POLICY_HINT = (
    "the policy's [lockdown].remove_builtin_copilot = true lets the agent delete it where it may write the "
    "installation (as root, or an installation owned by the workspace user)"
)


def find_binary(setting: str) -> Path | None:
    """The configured code-server executable, or `code-server` on PATH (None: not installed)."""
    if setting:
        path = Path(setting)
        if not path.is_absolute():
            found = which(setting)
            if found is None:
                raise AgentError(f"code_server_bin={setting!r} is not on PATH: give the full path")
            return Path(found)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise AgentError(f"code_server_bin={setting} is not an executable file")
        return path
    found = which("code-server")
    return Path(found) if found else None


def installation(binary: Path) -> Path | None:
    """The directory holding `lib/vscode` for this binary (None: not a layout we know)."""
    candidates: list[Path] = []
    for start in (binary, Path(os.path.realpath(binary))):
        candidates.extend(start.parents)
    candidates.extend(_script_roots(Path(os.path.realpath(binary))))
    for base in candidates:
        for root in (base, base / "node_modules" / "code-server", base / "lib" / "code-server"):
            if (root / "lib" / "vscode").is_dir():
                return root
    return None


def _script_roots(binary: Path) -> list[Path]:
    """Roots named in a small wrapper script (`exec node …/code-server/out/node/entry.js`)."""
    try:
        if binary.stat().st_size > MAX_SCRIPT_BYTES:
            return []
        text = binary.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    return [Path(match.group(1)) for match in re.finditer(_ENTRY_JS, text)]


def version_of(directory: Path) -> str | None:
    try:
        doc = json.loads((directory / "package.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    return version if isinstance(version, str) else None


def builtin_copilot_rule(setting: str, remove: bool = False) -> ActionRule:
    """Report the built-in Copilot Chat and runtime; with `remove` (the policy's
    `[lockdown].remove_builtin_copilot`), delete them where this process may write the installation."""
    removable, why_not = _removable(setting) if remove else (False, None)

    def observe() -> ActionFact:
        binary = find_binary(setting)
        if binary is None:
            return ActionFact(True, message="code-server is not on PATH here (set code_server_bin); nothing to check")
        root = installation(binary)
        if root is None:
            raise AgentError(
                f"cannot find the installation (lib/vscode) of {binary}: set code_server_bin to the real code-server executable"
            )
        left = builtin_removal.leftovers(root)
        if not left:
            return ActionFact(True)
        before = describe(root, left)
        if removable:
            return ActionFact(False, before, "deleted")
        if remove:
            why = why_not or builtin_removal.why_not_removable(left) or "the installation changed since the rules were made"
            return ActionFact(False, before, "deleted in the image", message=f"not deleted at run time: {why}; {REPORT_ONLY}")
        return ActionFact(False, before, "deleted in the image", message=f"{REPORT_ONLY}; {POLICY_HINT}")

    def fix() -> None:
        binary = find_binary(setting)
        root = installation(binary) if binary is not None else None
        if root is None:
            raise AgentError("the code-server installation is gone since it was checked; nothing deleted")
        left = builtin_removal.leftovers(root)
        why = builtin_removal.why_not_removable(left)
        if why:
            raise AgentError(f"not deleted: {why}")
        builtin_removal.delete(left, root)

    return ActionRule(
        "codeserver.builtin-copilot", "code-server", observe, fix if removable else None,
        title="code-server's built-in Copilot Chat",
    )


def describe(root: Path, left: list[Path]) -> str:
    """What remains, e.g. 'built-in GitHub.copilot-chat 0.67.0 in …/copilot (code-server 4.139.1); the Agent Host's …'."""
    chat = root / builtin_removal.BUILTIN_COPILOT
    runtimes = [path for path in left if path != chat]
    parts = []
    if chat in left:
        parts.append(f"built-in GitHub.copilot-chat {version_of(chat) or '?'} in {chat} (code-server {version_of(root) or '?'})")
    if runtimes:
        parts.append("the Agent Host's Copilot runtime: " + ", ".join(str(r) for r in runtimes))
    return "; ".join(parts)


def _removable(setting: str) -> tuple[bool, str | None]:
    """(may this process delete what is there now, why not). Decided when the rules are made, so
    that a rule it cannot fix stays report-only (drift with the reason) instead of failing."""
    try:
        binary = find_binary(setting)
        root = installation(binary) if binary is not None else None
    except AgentError as exc:
        return False, exc.message
    if root is None:
        return False, None  # observe says why
    left = builtin_removal.leftovers(root)
    why = builtin_removal.why_not_removable(left)
    return bool(left) and why is None, why
