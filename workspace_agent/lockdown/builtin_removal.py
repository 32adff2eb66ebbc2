"""Layer 3 at run time: deleting code-server's built-in Copilot Chat and the Copilot runtime.

The image deletes them at build (dockerfile/Dockerfile). A workspace whose image did not (an
older or a third-party image) keeps them until the admin's policy sets
`[lockdown].remove_builtin_copilot = true`: then the agent deletes them itself, but only where it
may write the installation (it runs as root, or the installation is the workspace user's, e.g.
an npm install in the home). Otherwise the rule reports exactly what remains and why.

Only the two paths the image step deletes, both inside `<installation>/lib/vscode`; a symlink is
unlinked, never followed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from workspace_agent.errors import AgentError

BUILTIN_COPILOT = Path("lib/vscode/extensions/copilot")
COPILOT_RUNTIME = Path("lib/vscode/node_modules/@github/copilot-sdk*")  # what the Agent Host runs


def leftovers(root: Path) -> list[Path]:
    """What is still there of the built-in Copilot Chat and its runtime, under one installation."""
    found: list[Path] = []
    chat = root / BUILTIN_COPILOT
    if chat.is_dir() or chat.is_symlink():
        found.append(chat)
    found += sorted((root / COPILOT_RUNTIME).parent.glob(COPILOT_RUNTIME.name))
    return found


def why_not_removable(paths: list[Path]) -> str | None:
    """None when this process may delete every path; otherwise one sentence saying why not.

    Deleting a directory tree needs write access to its parent and to the directories in it:
    root has it; another user only on an installation of its own. Checked on the parents and the
    tops (a file deep inside that still cannot go is reported by `delete`).
    """
    effective = os.access in os.supports_effective_ids
    for path in paths:
        places = [path.parent] if path.is_symlink() else [path.parent, path]  # a link: only its parent
        for place in places:
            try:
                info = place.lstat()
            except FileNotFoundError:
                continue
            if not os.access(place, os.W_OK | os.X_OK, effective_ids=effective):
                return (
                    f"{place} belongs to uid {info.st_uid} (mode {stat.S_IMODE(info.st_mode):04o}) and this "
                    f"agent runs as uid {os.geteuid()}, so it may not change the code-server installation"
                )
    return None


def delete(paths: list[Path], root: Path) -> None:
    """Delete each path (inside `root/lib/vscode` only); AgentError names what could not go."""
    import shutil  # only when something must go: it loads zlib, bz2 and lzma (~2 ms on every check)

    inside = (root / "lib" / "vscode").resolve()
    problems: list[str] = []
    for path in paths:
        if not path.parent.resolve().is_relative_to(inside):
            raise AgentError(f"{path} is not inside {inside}; not deleting it")
        try:
            if path.is_symlink() or not path.is_dir():
                path.unlink()
            else:
                shutil.rmtree(path)
        except FileNotFoundError:
            continue
        except OSError as exc:
            where = getattr(exc, "filename", None) or path
            problems.append(f"{where}: {exc.strerror or exc}")
    left = [str(p) for p in leftovers(root)]
    if problems or left:
        detail = "; ".join(problems) or "still present: " + ", ".join(left)
        raise AgentError(f"could not delete the built-in Copilot from {root}: {detail}")
