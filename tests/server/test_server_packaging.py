"""Packaging: `pip install ./server` works in a fresh venv (and takes the agent from this
repository, not the unrelated PyPI project of the same name); the agent alone never pulls the
server's dependencies."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.server.conftest import REPO

SERVER_ONLY = {
    "fastapi",
    "uvicorn",
    "sqlalchemy",
    "psycopg",
    "psycopg-binary",
    "jinja2",
    "starlette",
    "pydantic-settings",
}


def _names(requirements: list[str]) -> set[str]:
    import re

    return {re.split(r"[\s\[<>=!~;@]", r, maxsplit=1)[0].lower() for r in requirements}


def test_agent_metadata_has_no_server_dependencies() -> None:
    agent = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert not _names(agent["dependencies"]) & SERVER_ONLY
    server = tomllib.loads((REPO / "server" / "pyproject.toml").read_text())["project"]
    assert {"fastapi", "uvicorn", "sqlalchemy", "psycopg", "jinja2"} <= _names(
        server["dependencies"]
    )
    assert server["scripts"]["workspace-agent-server"] == "workspace_agent_server.cli:main"
    agent_dep = next(d for d in server["dependencies"] if d.startswith("workspace-agent"))
    assert "@" in agent_dep  # from this repository, never by bare name from PyPI


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
        cwd=REPO,
    )


@pytest.mark.slow
def test_fresh_venv_installs(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # The agent alone: what would be installed?
    report = tmp_path / "agent.json"
    dry = _pip(venv, "install", "--dry-run", "--quiet", "--report", str(report), ".")
    assert dry.returncode == 0, dry.stderr
    planned = {
        item["metadata"]["name"].lower() for item in json.loads(report.read_text())["install"]
    }
    assert "workspace-agent" in planned and not planned & SERVER_ONLY, planned
    # The server: a real install, then its console command.
    done = _pip(venv, "install", "--quiet", "./server")
    assert done.returncode == 0, done.stderr
    version = subprocess.run(
        [str(venv / "bin" / "workspace-agent-server"), "--version"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert version.returncode == 0 and "workspace-agent-server 0.1.0" in version.stdout
    probe = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            (
                "import workspace_agent, workspace_agent.wire as w, workspace_agent_server.app as a;"
                "print(w.REPORTS_PATH, a.__file__)"
            ),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.startswith("/api/v1/reports") and str(venv) in probe.stdout
    templates = list((venv / "lib").glob("python3*/site-packages/workspace_agent_server/templates"))
    assert templates and (templates[0] / "fleet.html").exists()
