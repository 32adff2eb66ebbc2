"""Finding a program on PATH, as a shell would.

`shutil.which` would do, but importing shutil also loads zlib, bz2 and lzma (~2 ms, on every
`check` that looks for code-server or a shell); this is the same search for the agent's needs.
"""

from __future__ import annotations

import os
import stat


def which(name: str, path: str | None = None) -> str | None:
    """The first executable regular file called `name` on `path` (default: $PATH), or None.

    A name with a slash is checked as it is, like a shell does.
    """
    if os.sep in name:
        return name if _executable(name) else None
    search = os.environ.get("PATH", os.defpath) if path is None else path
    for folder in search.split(os.pathsep):
        candidate = os.path.join(folder or os.curdir, name)
        if _executable(candidate):
            return candidate
    return None


def _executable(candidate: str) -> bool:
    try:
        info = os.stat(candidate)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(info.st_mode) and os.access(candidate, os.X_OK)
