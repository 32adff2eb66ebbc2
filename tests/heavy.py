"""Where the heavy real components are (installed by scripts/install-test-deps).

A component is named by its variable (WA_OPENCODE, ...): the environment wins, else the line
`export NAME=VALUE` of $WA_TEST_CACHE/env.sh (default ~/.cache/workspace-agent-test/env.sh).
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

# Read once at import (collection time): tests run with HOME pointing into tmp_path.
_CACHE = Path(os.environ.get("WA_TEST_CACHE") or Path.home() / ".cache" / "workspace-agent-test")


def _env_file() -> Path:
    return _CACHE / "env.sh"


def component(name: str) -> str | None:
    """The path of a component, or None when it is not installed."""
    if os.environ.get(name):
        return os.environ[name]
    try:
        lines = _env_file().read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    for line in lines:
        words = shlex.split(line, comments=True)
        if len(words) == 2 and words[0] == "export" and words[1].startswith(name + "="):
            value = words[1].split("=", 1)[1]
            return value if Path(value).exists() else None
    return None


def require(name: str, what: str) -> str:
    """The component's path, or skip the test saying what is missing and how to get it."""
    found = component(name)
    if found is None:
        pytest.skip(f"{what} is not installed ({name}): run scripts/install-test-deps")
    return found
