"""The code-server installation: its CLI, and the Copilot Chat it ships built in.

code-server >= 4.13x ships `GitHub.copilot-chat` inside the installation
(`lib/vscode/extensions/copilot`): the CLI cannot uninstall it, so the image deletes it at build
and the agent only reports it (`codeserver.builtin-copilot`, report-only: the installation is not
the workspace user's to change). The installation is found from the binary: through symlinks
(`/usr/bin/code-server` → `/usr/lib/code-server/bin/code-server`), up the parents, or from the
`…/out/node/entry.js` path a wrapper script runs (npm installs).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from workspace_agent.errors import AgentError
from workspace_agent.plan import ActionFact, ActionRule

BUILTIN_COPILOT = Path("lib/vscode/extensions/copilot")
COPILOT_RUNTIME = Path("lib/vscode/node_modules/@github/copilot-sdk*")  # what the Agent Host runs
_ENTRY_JS = re.compile(r"(/[^\s\"'`$]+)/out/node/entry\.js")
MAX_SCRIPT_BYTES = 64 * 1024
REPORT_ONLY = (
    "report only: the installation is not changed at run time; dockerfile/Dockerfile deletes it. Until then the "
    "locked User settings (vscode.setting.* rules) hide it and keep the Agent Host from starting"
)


def find_binary(setting: str) -> Path | None:
    """The configured code-server executable, or `code-server` on PATH (None: not installed)."""
    if setting:
        path = Path(setting)
        if not path.is_absolute():
            found = shutil.which(setting)
            if found is None:
                raise AgentError(f"code_server_bin={setting!r} is not on PATH: give the full path")
            return Path(found)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise AgentError(f"code_server_bin={setting} is not an executable file")
        return path
    found = shutil.which("code-server")
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
    return [Path(match.group(1)) for match in _ENTRY_JS.finditer(text)]


def version_of(directory: Path) -> str | None:
    try:
        doc = json.loads((directory / "package.json").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    version = doc.get("version") if isinstance(doc, dict) else None
    return version if isinstance(version, str) else None


def builtin_copilot_rule(setting: str) -> ActionRule:
    def observe() -> ActionFact:
        binary = find_binary(setting)
        if binary is None:
            return ActionFact(True, message="code-server is not on PATH here (set code_server_bin); nothing to check")
        root = installation(binary)
        if root is None:
            raise AgentError(
                f"cannot find the installation (lib/vscode) of {binary}: set code_server_bin to the real code-server executable"
            )
        copilot = root / BUILTIN_COPILOT
        if not copilot.is_dir():
            return ActionFact(True)
        before = f"built-in GitHub.copilot-chat {version_of(copilot) or '?'} in {copilot} (code-server {version_of(root) or '?'})"
        runtimes = sorted((root / COPILOT_RUNTIME).parent.glob(COPILOT_RUNTIME.name))
        if runtimes:
            before += "; the Agent Host's Copilot runtime: " + ", ".join(str(r) for r in runtimes)
        return ActionFact(False, before, "deleted in the image", message=REPORT_ONLY)

    return ActionRule("codeserver.builtin-copilot", "code-server", observe, None, title="code-server's built-in Copilot Chat")
