"""An installed wheel finds prompts/ and settings/ (not only the source tree)."""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_installed_wheel_ships_prompts_and_settings(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(dist), str(REPO)],
        check=True,
        capture_output=True,
    )
    wheel = next(dist.glob("workspace_agent-*.whl"))
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    for expected in ("workspace_agent/_data/prompts/standard.md", "workspace_agent/_data/settings/models.toml"):
        assert expected in names
    assert not any(name.startswith(("server/", "tests/")) for name in names)

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # The agent's dependencies come from this test environment (offline), appended after the
    # new venv's own site-packages, so the wheel's copy of the agent is the one imported. (The
    # base interpreter's site-packages need not have them: Debian's python3 does not.)
    import click

    own_site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                   capture_output=True, text=True, check=True).stdout.strip())
    (own_site / "zz-test-deps.pth").write_text(str(Path(click.__file__).parent.parent) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q", str(wheel)], check=True, capture_output=True)
    home = tmp_path / "demo-home"
    script = (
        "import json, workspace_agent, workspace_agent.data as d;"
        "print(json.dumps({'file': workspace_agent.__file__, 'prompts': str(d.data_dir('prompts')),"
        " 'standard': d.prompt_text('standard')}))"
    )
    clean_env = {"PATH": "/usr/bin:/bin"}  # no PYTHONPATH: the installed wheel must stand alone
    shown = subprocess.run([str(python), "-c", script], capture_output=True, text=True, cwd=tmp_path, check=True, env=clean_env)
    found = json.loads(shown.stdout)
    assert found["file"].startswith(str(env_dir)), "the wheel's copy must be the one imported"
    assert found["prompts"].startswith(str(env_dir))
    assert found["standard"] == (REPO / "prompts" / "standard.md").read_text()
    run = subprocess.run(
        [str(env_dir / "bin" / "workspace-agent"), "bootstrap", "--demo", "--home", str(home), "--json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=clean_env,
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["counts"]["error"] == 0
    assert (home / ".config/opencode/enforcement.md").read_text() == found["standard"]
