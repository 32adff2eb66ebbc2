"""Claude Code: settings merged into the managed or the user file, checked against the documented
keys, then loaded by the real `claude` (offline: `auth status`, `doctor`) and, with a real LiteLLM
proxy on loopback, a whole `claude -p` round trip that must carry the workspace key."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.heavy import require
from workspace_agent import data, jsonc
from workspace_agent.clients import claude_code
from workspace_agent.config import load_config
from workspace_agent.desired import build_desired
from workspace_agent.paths import Paths

USER_FILE = """{
  "theme": "dark",
  "env": {"MY_VAR": "mine", "DISABLE_TELEMETRY": "0"},
  "permissions": {"allow": ["Bash(git log:*)"]}
}
"""


@pytest.fixture
def user_scope(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The managed dir cannot be written (its parent is a file): the user's file is used."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("WORKSPACE_AGENT_CLAUDE_MANAGED_DIR", str(blocker / "etc-claude-code"))
    return blocker


@pytest.fixture
def claude_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AI_ASSISTANT", "claude-code")


def _desired(policy: dict | None = None):
    policy = policy or {}
    return build_desired(load_config({}, os.environ, policy), policy)


def _rules(result_out: str) -> dict[str, dict]:
    return {r["rule_id"]: r for r in json.loads(result_out)["rules"]}


def test_managed_scope_when_writable(home: Path, keyed_env: str, claude_env: None, cli, tmp_path: Path) -> None:
    result = cli("bootstrap", "--json")
    assert result.code == 0
    managed = tmp_path / "etc-claude-code" / "managed-settings.json"
    doc = json.loads(managed.read_text())
    assert claude_code.validate(doc) == []
    assert doc["env"]["ANTHROPIC_BASE_URL"] == "http://litellm:4000"
    assert doc["env"]["ANTHROPIC_AUTH_TOKEN"] == "" and doc["env"]["ANTHROPIC_API_KEY"] == ""
    assert doc["env"]["CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC"] == "1"
    assert doc["model"] == "claude-sonnet-4-5"
    assert doc["apiKeyHelper"].split()[-3:] == ["--print", "--file", str(Paths.for_home(home).key_file)]
    assert keyed_env not in managed.read_text()
    assert not Paths.for_home(home).claude_settings.exists()
    assert cli("check", "-q").code == 0


def test_user_scope_merges_and_keeps_the_users_keys(home: Path, keyed_env: str, claude_env: None, user_scope: Path, cli) -> None:
    settings = Paths.for_home(home).claude_settings
    settings.parent.mkdir(parents=True)
    settings.write_text(USER_FILE)
    assert cli("bootstrap", "-q").code == 0
    text = settings.read_text()
    assert text.startswith('{\n  "theme": "dark",\n'), "the user's layout stays"
    doc = json.loads(text)
    assert doc["theme"] == "dark" and doc["permissions"] == {"allow": ["Bash(git log:*)"]}
    assert doc["env"]["MY_VAR"] == "mine"
    assert doc["env"]["DISABLE_TELEMETRY"] == "1", "the platform's value wins for the keys it owns"
    assert claude_code.validate({k: doc[k] for k in claude_code.DOCUMENTED_KEYS}) == []
    assert keyed_env not in text
    assert cli("bootstrap", "-q", "--detailed-exitcodes").code == 0, "second run changes nothing"

    doc_text = text.replace('"DISABLE_TELEMETRY": "1"', '"DISABLE_TELEMETRY": "0"')
    settings.write_text(doc_text)
    drift = _rules(cli("check", "--json").out)["claude.env"]
    assert drift["state"] == "drift" and '"DISABLE_TELEMETRY": "0"' in drift["before"]


def test_env_of_the_wrong_type_is_an_error_and_nothing_is_lost(
    home: Path, keyed_env: str, claude_env: None, user_scope: Path, cli
) -> None:
    settings = Paths.for_home(home).claude_settings
    settings.parent.mkdir(parents=True)
    bad = '{"env": "oops", "theme": "dark"}\n'
    settings.write_text(bad)
    result = cli("bootstrap", "--json")
    rules = _rules(result.out)
    assert rules["claude.env"]["state"] == "error"
    assert "'env' must be an object" in rules["claude.env"]["message"]
    assert result.code == 4
    kept = jsonc.loads(settings.read_text())
    assert kept["env"] == "oops" and kept["theme"] == "dark", "the user's values are not replaced"


def test_comments_are_reported_because_claude_ignores_such_a_file(
    home: Path, keyed_env: str, claude_env: None, user_scope: Path, cli
) -> None:
    settings = Paths.for_home(home).claude_settings
    settings.parent.mkdir(parents=True)
    settings.write_text('// mine\n{"theme": "dark",}\n')
    result = cli("bootstrap", "--json")
    rule = _rules(result.out)["claude.settings-json"]
    assert rule["state"] == "error" and "not strict JSON (line 1" in rule["message"]
    assert result.code == 4
    text = settings.read_text()
    assert text.startswith("// mine") and jsonc.loads(text)["theme"] == "dark"


@pytest.mark.parametrize(
    ("policy", "level", "expected_file"),
    [
        ({}, "standard", None),  # the template's rule: unrestricted (an empty prompt: no rule file)
        ({"claude_code": {"enforcement_level": "workspace"}}, "design-first", "design-first"),
        ({"claude_code": {"enforcement_level": "standard"}}, "design-first", "standard"),
    ],
)
def test_enforcement_level_is_a_policy_choice(
    home: Path, keyed_env: str, claude_env: None, cli, monkeypatch, tmp_path: Path, policy: dict, level: str, expected_file
) -> None:
    import tomlkit

    (tmp_path / "policy.toml").write_text(tomlkit.dumps(policy))
    monkeypatch.setenv("ENFORCEMENT_LEVEL", level)
    assert cli("bootstrap", "-q").code == 0
    rule_file = Paths.for_home(home).claude_rule_file
    if expected_file is None:
        assert not rule_file.exists()
        assert data.prompt_text("unrestricted") == ""
    else:
        assert rule_file.read_text() == data.prompt_text(expected_file)


def test_bad_policy_is_one_sentence(home: Path, keyed_env: str, claude_env: None, cli, tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text('[claude_code]\nenforcement_level = "lax"\n')
    result = cli("bootstrap")
    assert result.code == 1 and "choose one of unrestricted, standard, design-first, workspace" in result.err
    (tmp_path / "policy.toml").write_text('[claude_code]\nmodel = "x"\n')
    assert "unknown key 'model' in [claude_code]" in cli("plan").err


def test_validate_catches_what_claude_would_reject() -> None:
    assert claude_code.validate({"apiKeyHelper": 5}) == ["apiKeyHelper: expected str, got int"]
    assert claude_code.validate({"env": {"PORT": 3000}}) == ["env.PORT: environment values must be strings, got int"]
    assert claude_code.validate({"apiKeyHelpr": "x"}) == ["apiKeyHelpr: not a documented Claude Code setting"]


def test_policy_env_with_a_number_stops_the_run(home: Path, keyed_env: str, claude_env: None, cli, tmp_path: Path) -> None:
    (tmp_path / "policy.toml").write_text("[claude_code.env]\nAPI_TIMEOUT_MS = 600000\n")
    result = cli("plan")
    assert result.code == 1 and "env.API_TIMEOUT_MS: environment values must be strings" in result.err


# --- the real Claude Code CLI ---------------------------------------------------------------


def _claude(binary: str, home: Path, *args: str, extra: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(REPO),  # the apiKeyHelper runs `python -m workspace_agent` of this tree
        # What the platform template exports today: both would beat apiKeyHelper if not blanked.
        "ANTHROPIC_AUTH_TOKEN": "ollama",
        "ANTHROPIC_BASE_URL": "http://host.docker.internal:11434",
        **(extra or {}),
    }
    project = home / "project"
    project.mkdir(exist_ok=True)
    return subprocess.run([binary, *args], capture_output=True, text=True, env=env, cwd=project, timeout=120, stdin=subprocess.DEVNULL, check=False)


@pytest.mark.claude
@pytest.mark.slow
def test_claude_accepts_the_user_settings_offline(home: Path, keyed_env: str, claude_env: None, user_scope: Path, cli) -> None:
    binary = require("WA_CLAUDE_CODE", "the Claude Code CLI (npm @anthropic-ai/claude-code)")
    settings = Paths.for_home(home).claude_settings
    settings.parent.mkdir(parents=True)
    settings.write_text(USER_FILE)
    assert cli("bootstrap", "-q").code == 0

    status = _claude(binary, home, "auth", "status", extra={"ANTHROPIC_API_KEY": "sk-ant-from-the-shell"})
    assert status.returncode == 0, status.stdout + status.stderr
    seen = json.loads(status.stdout)
    assert seen["loggedIn"] is True
    assert seen["authMethod"] == "api_key_helper" and seen["apiKeySource"] == "apiKeyHelper"
    assert seen["analyticsDisabled"] is True

    doctor = _claude(binary, home, "doctor")
    assert "Invalid settings" not in doctor.stdout, doctor.stdout
    assert "Auto-updates: disabled" in doctor.stdout
    assert "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC is set" in doctor.stdout


@pytest.mark.claude
@pytest.mark.slow
def test_claude_accepts_the_managed_document(home: Path, keyed_env: str, claude_env: None, cli, tmp_path: Path) -> None:
    """Claude reads managed settings only from /etc/claude-code, which a test must not touch: the
    same document is loaded as user settings instead (the schema is the same for these keys)."""
    binary = require("WA_CLAUDE_CODE", "the Claude Code CLI (npm @anthropic-ai/claude-code)")
    assert cli("bootstrap", "-q").code == 0
    managed = tmp_path / "etc-claude-code" / "managed-settings.json"
    settings = Paths.for_home(home).claude_settings
    settings.parent.mkdir(parents=True, exist_ok=True)
    settings.write_text(managed.read_text())
    status = _claude(binary, home, "auth", "status")
    assert status.returncode == 0 and json.loads(status.stdout)["authMethod"] == "api_key_helper"
    assert "Invalid settings" not in _claude(binary, home, "doctor").stdout


@pytest.mark.claude
@pytest.mark.slow
def test_claude_rejects_a_broken_document(home: Path) -> None:
    """The offline check can fail: a wrong type is reported by the real CLI."""
    binary = require("WA_CLAUDE_CODE", "the Claude Code CLI (npm @anthropic-ai/claude-code)")
    settings = Paths.for_home(home).claude_settings
    settings.parent.mkdir(parents=True)
    settings.write_text('{"apiKeyHelper": 5}\n')
    assert "Invalid settings" in _claude(binary, home, "doctor").stdout


# --- a whole round trip through a real LiteLLM proxy -----------------------------------------

AUTH_PY = '''
import json, os
from litellm.proxy._types import UserAPIKeyAuth

async def user_api_key_auth(request, api_key):
    with open(os.environ["WA_SEEN"], "a") as f:
        f.write(json.dumps({"path": request.url.path, "key": api_key}) + "\\n")
    if api_key == os.environ["WA_GOOD_KEY"]:
        return UserAPIKeyAuth(api_key=api_key, user_id="workspace")
    raise Exception("unknown key")
'''
HOOK_PY = '''
import json, os
from litellm.integrations.custom_logger import CustomLogger

class Capture(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict, cache, data, call_type):
        with open(os.environ["WA_SEEN"], "a") as f:
            f.write(json.dumps({"call_type": str(call_type), "model": data.get("model"),
                                "body": json.dumps([data.get("system"), data.get("messages")])}) + "\\n")
        return data

handler = Capture()
'''
CONFIG_YAML = """
model_list:
  - model_name: claude-sonnet-4-5
    litellm_params: {model: openai/gpt-4o-mini, mock_response: "hello from the gateway", api_key: fake}
  - model_name: claude-haiku-4-5
    litellm_params: {model: openai/gpt-4o-mini, mock_response: "short", api_key: fake}
general_settings:
  master_key: sk-master-0123456789abcdef0123456789abcdef
  custom_auth: auth.user_api_key_auth
litellm_settings:
  callbacks: hook.handler
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def litellm_proxy(tmp_path_factory: pytest.TempPathFactory, keyed_env: str) -> Iterator[tuple[str, Path]]:
    venv = require("WA_LITELLM_VENV", "the LiteLLM proxy venv")
    work = tmp_path_factory.mktemp("litellm")
    (work / "auth.py").write_text(textwrap.dedent(AUTH_PY))
    (work / "hook.py").write_text(textwrap.dedent(HOOK_PY))
    (work / "config.yaml").write_text(CONFIG_YAML)
    seen = work / "seen.jsonl"
    seen.write_text("")
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(LITELLM_LOCAL_MODEL_COST_MAP="True", WA_SEEN=str(seen), WA_GOOD_KEY=keyed_env)
    log = (work / "log.txt").open("w")
    proc = subprocess.Popen(
        [str(Path(venv) / "bin" / "litellm"), "--config", "config.yaml", "--host", "127.0.0.1", "--port", str(port)],
        cwd=work,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(url + "/health/liveliness", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail("LiteLLM did not start: " + (work / "log.txt").read_text()[-2000:])
            time.sleep(0.3)
        yield url, seen
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.mark.claude
@pytest.mark.litellm
@pytest.mark.slow
def test_claude_talks_to_litellm_with_the_workspace_key(
    home: Path, keyed_env: str, claude_env: None, user_scope: Path, cli, monkeypatch, tmp_path: Path, litellm_proxy
) -> None:
    binary = require("WA_CLAUDE_CODE", "the Claude Code CLI (npm @anthropic-ai/claude-code)")
    url, seen = litellm_proxy
    monkeypatch.setenv("AI_GATEWAY_URL", url)
    (tmp_path / "policy.toml").write_text('[claude_code]\nenforcement_level = "workspace"\n')
    assert cli("bootstrap", "-q").code == 0

    run = _claude(binary, home, "-p", "say hi")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "hello from the gateway" in run.stdout
    records = [json.loads(line) for line in seen.read_text().splitlines()]
    auths = [r for r in records if "key" in r]
    calls = [r for r in records if "call_type" in r and r["model"]]
    assert auths and {r["key"] for r in auths} == {keyed_env}, "every request carried the workspace key"
    assert {r["path"] for r in auths} == {"/v1/messages"}
    assert calls and calls[0]["call_type"].endswith("anthropic_messages")
    assert "Working agreement (standard)" in calls[0]["body"], "the enforcement rule file reached the model"


def test_helper_command_runs_this_interpreter() -> None:
    command = claude_code.helper_command(_desired())
    assert command.startswith(sys.executable) and " -m workspace_agent key --print --file " in command
