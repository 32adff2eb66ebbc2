"""Shared fixtures: every test runs with a throwaway HOME and none of this machine's settings.

`isolated_env` (autouse) clears every variable the agent reads and points HOME, XDG dirs, the
policy file and OpenCode's managed dir into tmp_path, so no test can touch the real home or /etc.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from workspace_agent.config import SETTINGS

if TYPE_CHECKING:
    from tests.litellm_db_proxy import DbProxy

REPO = Path(__file__).resolve().parent.parent
TEST_KEY = "sk-test-Zq8mV3pL0rT6yW1xN4bK"


@dataclass
class CliResult:
    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for setting in SETTINGS:
        if setting.env:
            monkeypatch.delenv(setting.env, raising=False)
    for name in list(os.environ):
        if name.startswith(("XDG_", "OPENCODE_", "CODER_", "WORKSPACE_AGENT_", "LITELLM_", "AI_")):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    policy = tmp_path / "policy.toml"
    policy.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("WORKSPACE_AGENT_POLICY", str(policy))
    monkeypatch.setenv("WORKSPACE_AGENT_MANAGED_DIR", str(tmp_path / "etc-opencode"))
    monkeypatch.setenv("WORKSPACE_AGENT_CLAUDE_MANAGED_DIR", str(tmp_path / "etc-claude-code"))
    return home


@pytest.fixture
def home(isolated_env: Path) -> Path:
    return isolated_env


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run the CLI in-process (fast): cli("bootstrap", "--json") → CliResult."""
    from workspace_agent.cli import main

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        code = main(list(args))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


@pytest.fixture
def cli_proc() -> Callable[..., CliResult]:
    """Run `python -m workspace_agent` as a real process with the test's environment."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> CliResult:
        proc = subprocess.run(
            [sys.executable, "-m", "workspace_agent", *args],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
            timeout=timeout,
            cwd=REPO,
        )
        return CliResult(proc.returncode, proc.stdout, proc.stderr)

    return run


def tree_snapshot(root: Path) -> dict[str, tuple[int, bytes | None]]:
    """path → (mode, content) for every file and dir under root: compare before/after a run."""
    snap: dict[str, tuple[int, bytes | None]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        content = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        snap[str(path.relative_to(root))] = (info.st_mode, content)
    return snap


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, tuple[int, bytes | None]]]:
    return tree_snapshot


@pytest.fixture
def keyed_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A pasted key in the environment (the simplest way to get a complete workspace)."""
    monkeypatch.setenv("LITELLM_API_KEY", TEST_KEY)
    yield TEST_KEY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Close with the real components (and versions) this run exercised, so a green run that
    used none of them is visible as such."""
    from tests.heavy import exercised_line

    terminalreporter.write_line(exercised_line() or "real components exercised: none")


@pytest.fixture(scope="session")
def db_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DbProxy]:
    """A real LiteLLM proxy on its own fresh PostgreSQL database, for the whole session
    (tests/litellm_db_proxy.py); the database is dropped at the end."""
    from tests.heavy import missing, require
    from tests.litellm_db_proxy import DatabaseUnavailable, start_db_proxy

    component = require("litellm-db", "LiteLLM's Prisma client and query engine (component litellm-db, WA_LITELLM_DB)")
    venv = require("litellm", "the LiteLLM 1.108.7 proxy venv (component litellm, WA_LITELLM_VENV)")
    try:
        proxy = start_db_proxy(venv, component, tmp_path_factory.mktemp("litellm-db"))
    except DatabaseUnavailable as exc:
        missing("PostgreSQL for the LiteLLM database tests", str(exc))
    try:
        yield proxy
    finally:
        proxy.stop()


# `scripts/test --fast` (WA_FAST=1) deselects these markers; a module whose module-level
# `pytestmark` carries one of them has no test left in the subset, so it is not even imported
# (collection was a third of the fast run: hypothesis, fastapi, schemathesis imports).
_FAST_EXCLUDED = re.compile(
    r"^pytestmark = .*pytest\.mark\.(slow|opencode|roo|codeserver|litellm|postgres|claude)\b", re.M
)


_SERVER_TEST_DIRS = ("server", "identity")  # the drift server's and the key provisioner's tests


def pytest_ignore_collect(collection_path: Path) -> bool | None:
    """WA_FAST=agent (scripts/test --fast): the agent's quick tests; WA_FAST=server
    (scripts/test --fast-server): the servers' quick tests."""
    fast = os.environ.get("WA_FAST")
    if fast not in ("agent", "server"):
        return None
    if collection_path.is_dir() and collection_path.parent == REPO / "tests":
        in_server = collection_path.name in _SERVER_TEST_DIRS
        return True if (fast == "agent") == in_server and collection_path.name not in ("standins", "faults", "node", "litellm_db") else None
    if not collection_path.name.startswith("test_") or collection_path.suffix != ".py":
        return None
    if fast == "server" and collection_path.parent == REPO / "tests":
        return True
    try:
        text = collection_path.read_text(encoding="utf-8")
    except OSError:
        return None
    return True if _FAST_EXCLUDED.search(text) else None
