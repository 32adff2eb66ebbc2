"""benchmarks/baseline_startup.sh does what platform.md says the platform's startup script does,
so comparing the agent with it compares the same work."""

from __future__ import annotations

import pytest

import json
import os
import subprocess
import sys
from pathlib import Path

from benchmarks.agent import BASELINE_SCRIPT
from benchmarks.home import build_home
from tests.standins.provisioner import run_provisioner

# Left out of `scripts/test --fast`: each test runs the bash baseline script.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent


def _env(home: Path, url: str, **extra: str) -> dict[str, str]:
    return {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(home),
        "CODER_WORKSPACE_ID": "ws-1",
        "CODER_WORKSPACE_OWNER": "alice",
        "CODER_WORKSPACE_NAME": "dev",
        "PROVISIONER_URL": url,
        "PROVISIONER_SECRET": "test-secret",
        "ENFORCEMENT_LEVEL": "standard",
        "AI_ASSISTANT": "both",
        "AI_MODEL": "claude-opus",
        **extra,
    }


def _run(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/bash", str(BASELINE_SCRIPT)], env=env, capture_output=True, check=False, text=True, timeout=60)


def test_it_gets_the_key_writes_the_client_files_and_appends_to_bashrc(tmp_path: Path) -> None:
    build_home(tmp_path)
    with run_provisioner() as prov:
        first = _run(_env(tmp_path, prov.url))
        second = _run(_env(tmp_path, prov.url))
        key = prov.keys["ws-1"]
        body = prov.requests[0].body
    assert first.returncode == 0 and "WARNING" not in first.stdout, first.stdout
    assert "reused=False" in first.stdout and "reused=True" in second.stdout
    assert body == {"workspace_id": "ws-1", "username": "alice", "workspace_name": "dev", "enforcement_level": "standard"}
    roo = json.loads((tmp_path / ".config/roo-code/settings.json").read_text())
    profile = roo["providerProfiles"]["apiConfigs"]["litellm"]
    assert profile["openAiApiKey"] == key and profile["openAiModelId"] == "claude-opus-4"
    assert roo["globalSettings"]["customInstructions"]
    opencode = json.loads((tmp_path / ".config/opencode/opencode.json").read_text())
    assert opencode["provider"]["litellm"]["options"]["apiKey"] == key  # inline, as the platform does
    assert opencode["instructions"] == [str(tmp_path / ".config/opencode/enforcement.md")]
    assert (tmp_path / ".config/opencode/enforcement.md").read_text().startswith("## How to work here")
    bashrc = (tmp_path / ".bashrc").read_text()
    assert bashrc.count(f'export OPENAI_API_KEY="{key}"') == 2  # grows at every start
    assert bashrc.startswith("# line 0 of a typical .bashrc")


def test_a_quote_in_a_name_breaks_the_request_as_the_platform_script_does(tmp_path: Path) -> None:
    with run_provisioner() as prov:
        result = _run(_env(tmp_path, prov.url, CODER_WORKSPACE_NAME='dev "two"'))
    assert result.returncode == 0  # failures are only a warning
    assert "WARNING" in result.stdout
    assert not (tmp_path / ".config/roo-code/settings.json").exists()


def test_a_pasted_key_skips_the_provisioner(tmp_path: Path) -> None:
    with run_provisioner() as prov:
        result = _run(_env(tmp_path, prov.url, LITELLM_API_KEY="sk-pasted-000000001111"))
        assert prov.requests == []
    assert result.returncode == 0
    assert "sk-pasted-000000001111" in (tmp_path / ".config/roo-code/settings.json").read_text()
    assert not (tmp_path / ".config/opencode/opencode.json").exists()  # no opencode binary in this home


def test_same_work_as_the_agent_key_gateway_and_model_agree(tmp_path: Path) -> None:
    agent_home, bash_home = tmp_path / "agent", tmp_path / "bash"
    for home in (agent_home, bash_home):
        build_home(home)
    (tmp_path / "policy.toml").write_text("")
    with run_provisioner() as prov:
        assert _run(_env(bash_home, prov.url)).returncode == 0
        env = {**_env(agent_home, prov.url), "PYTHONPATH": str(REPO), "WORKSPACE_AGENT_POLICY": str(tmp_path / "policy.toml"),
               "WORKSPACE_AGENT_MANAGED_DIR": str(tmp_path / "etc-opencode")}
        agent = subprocess.run([sys.executable, "-m", "workspace_agent", "bootstrap", "-q"], env=env, cwd=REPO,
                               capture_output=True, check=False, text=True, timeout=120)
        assert agent.returncode == 0, agent.stderr
        key = prov.keys["ws-1"]
    assert [r.body["workspace_id"] for r in prov.requests] == ["ws-1", "ws-1"]  # one key request each

    def profile(home: Path) -> dict[str, str]:
        p = json.loads((home / ".config/roo-code/settings.json").read_text())["providerProfiles"]["apiConfigs"]["litellm"]
        return {k: p[k] for k in ("apiProvider", "openAiBaseUrl", "openAiApiKey", "openAiModelId", "id")}

    assert profile(agent_home) == profile(bash_home)
    assert profile(agent_home)["openAiApiKey"] == key
    for home in (agent_home, bash_home):
        oc = json.loads((home / ".config/opencode/opencode.json").read_text())
        assert oc["model"] == "litellm/claude-opus-4" and oc["provider"]["litellm"]["options"]["baseURL"] == "http://litellm:4000/v1"
    assert os.stat(agent_home / ".config/roo-code/settings.json").st_mode & 0o077 == 0
