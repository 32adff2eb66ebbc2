"""Where the heavy real components for the tests are (installed by scripts/install-test-deps).

Each component is found through an environment variable; when the variable is not set, the
`export NAME=VALUE` lines of `$WA_TEST_CACHE/env.sh` (default
`~/.cache/workspace-agent-test/env.sh`, with the HOME of when this module was imported) are
read, without running a shell. A component whose path does not exist is treated as missing,
so its tests skip with a reason.

    from tests.heavy import component, require

    code_server = require("WA_CODE_SERVER", "code-server 4.139.1")  # or "code-server"
    node24_bin = component("node")                                  # None when missing
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path
from typing import NoReturn

import pytest

# Component name (as given to scripts/install-test-deps) -> variable in env.sh.
VARIABLES = {
    "node": "WA_NODE24_BIN",  # directory holding Node 24's `node`
    "code-server": "WA_CODE_SERVER",  # executable (runs code-server with Node 24)
    "opencode": "WA_OPENCODE",  # the opencode binary
    "roo-types": "WA_ROO_TYPES_DIR",  # directory whose node_modules has @roo-code/types
    "litellm": "WA_LITELLM_VENV",  # venv with litellm[proxy] and prisma
    "litellm-db": "WA_LITELLM_DB",  # generated Prisma client, query-engine shim, LiteLLM's schema.sql
    "chromium": "WA_CHROMIUM",  # /usr/bin/chromium
    "claude-code": "WA_CLAUDE_CODE",  # the claude CLI (npm @anthropic-ai/claude-code)
}


# The real home, taken when the tests are collected: tests run with a throwaway HOME
# (conftest.isolated_env), which must not hide the cache.
_HOME_AT_IMPORT = Path.home()


def cache_dir() -> Path:
    root = os.environ.get("WA_TEST_CACHE")
    return Path(root) if root else _HOME_AT_IMPORT / ".cache" / "workspace-agent-test"


def parse_env_file(text: str) -> dict[str, str]:
    """The `export NAME=VALUE` lines of an env file (VALUE may be shell-quoted)."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        name, sep, raw = line[len("export ") :].strip().partition("=")
        if not sep or not name.isidentifier():
            continue
        try:
            words = shlex.split(raw)
        except ValueError:
            continue
        values[name] = words[0] if len(words) == 1 else ""
    return values


def _env_file_values() -> dict[str, str]:
    try:
        return parse_env_file((cache_dir() / "env.sh").read_text(encoding="utf-8"))
    except OSError:
        return {}


def component(name: str) -> str | None:
    """Path of a component, by component name ("code-server") or variable ("WA_CODE_SERVER").

    None when it is not installed (not set, or set to a path that does not exist).
    """
    variable = VARIABLES.get(name, name)
    value = os.environ.get(variable) or _env_file_values().get(variable)
    if not value or not os.path.exists(value):
        return None
    return value


def in_ci() -> bool:
    """CI=true: a real component that is missing is a failure, never a silent skip."""
    return os.environ.get("CI", "").lower() == "true"


def missing(what: str, how: str) -> NoReturn:
    """Stop the calling test because `what` is not on this machine: a skip on a developer's
    machine, a failure naming it (and how to get it) in CI."""
    __tracebackhide__ = True
    message = f"{what} is not available: {how}"
    if in_ci():
        pytest.fail(f"{message} (CI=true: a missing real component fails the run)", pytrace=False)
    pytest.skip(message)


# Components the tests asked for and got, for the closing "real components" line (conftest).
EXERCISED: set[str] = set()


def require(name: str, what: str) -> str:
    """The component's path; skips the calling test when it is not installed (fails in CI)."""
    __tracebackhide__ = True  # report the skip at the caller's line
    value = component(name)
    if value is None:
        missing(what, "run scripts/install-test-deps")
    EXERCISED.add(VARIABLES.get(name, name))
    return value


def version_of(variable: str) -> str:
    """The version install-test-deps recorded for a component (`WA_X_VERSION` in env.sh)."""
    key = f"{variable}_VERSION"
    return os.environ.get(key) or _env_file_values().get(key) or "version unknown"


def exercised_line() -> str | None:
    """One line naming each real component (and version) that this run's tests used."""
    if not EXERCISED:
        return None
    names = {value: name for name, value in VARIABLES.items()}
    parts = sorted(f"{names.get(variable, variable)} {version_of(variable)}" for variable in EXERCISED)
    return "real components exercised: " + ", ".join(parts)


def run_opencode(binary: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the real OpenCode binary confined to `home` (no update checks, no model fetching)."""
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local/share"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_STATE_HOME": str(home / ".local/state"),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_LSP_DOWNLOAD": "1",
        # OpenCode merges the machine-wide managed layer (/etc/opencode on Linux) into every
        # config; a machine where the agent once ran as root has one. Point it at the test's own
        # managed dir (where the agent under test writes it) so the machine cannot leak in.
        "OPENCODE_TEST_MANAGED_CONFIG_DIR": os.environ.get(
            "WORKSPACE_AGENT_MANAGED_DIR", str(home / ".no-managed-opencode")
        ),
    }
    return subprocess.run([binary, *args], capture_output=True, text=True, env=env, cwd=home, timeout=120, check=False)
