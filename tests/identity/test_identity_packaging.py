"""The server distribution ships the provisioner and the Coder identity check beside the drift
server, with the `workspace-key-provisioner` command; the agent's dependencies stay the same."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO


def test_the_server_metadata_names_the_command_and_packages() -> None:
    server = tomllib.loads((REPO / "server" / "pyproject.toml").read_text())
    assert server["project"]["scripts"]["workspace-key-provisioner"] == "key_provisioner.cli:main"
    packages = server["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    assert {"workspace_agent_server", "coder_identity", "key_provisioner"} <= set(packages)
    agent = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.lower().startswith(("fastapi", "uvicorn", "starlette")) for d in agent)


@pytest.mark.slow
def test_the_server_wheel_contains_them(tmp_path: Path) -> None:
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--quiet",
            "-w",
            str(tmp_path),
            str(REPO / "server"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("workspace_agent_server-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        scripts = archive.read(entry_points).decode()
    for module in (
        "coder_identity/verify.py",
        "http_guard/body_limit.py",
        "key_provisioner/app.py",
        "key_provisioner/cli.py",
        "workspace_agent_server/routes.py",
    ):
        assert module in names
    assert "workspace-key-provisioner = key_provisioner.cli:main" in scripts
