"""The generated client configs, loaded by the real clients' own code: the OpenCode binary and
the zod schemas Roo Code's import uses (@roo-code/types)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.heavy import require, run_opencode
from workspace_agent.paths import Paths

REPO = Path(__file__).resolve().parent.parent




@pytest.mark.opencode
@pytest.mark.slow
@pytest.mark.parametrize("level", ["standard", "unrestricted"])
def test_opencode_loads_generated_config(home: Path, keyed_env: str, cli, monkeypatch, level: str) -> None:
    binary = require("WA_OPENCODE", "the OpenCode binary (npm opencode-ai)")
    monkeypatch.setenv("ENFORCEMENT_LEVEL", level)
    monkeypatch.setenv("AI_MODEL", "claude-opus")
    assert cli("bootstrap", "-q").code == 0
    paths = Paths.for_home(home)

    shown = run_opencode(binary, home, "debug", "config")
    assert shown.returncode == 0, shown.stderr
    merged = json.loads(shown.stdout[shown.stdout.index("{"):])
    assert merged["model"] == "litellm/claude-opus-4"
    assert merged["enabled_providers"] == ["litellm"]
    assert merged["instructions"] == [str(paths.opencode_enforcement)]
    provider = merged["provider"]["litellm"]
    assert provider["options"]["baseURL"] == "http://litellm:4000/v1"
    assert keyed_env not in shown.stdout, "OpenCode masks the key it read from our file"

    listed = run_opencode(binary, home, "models")
    assert listed.returncode == 0, listed.stderr
    assert set(listed.stdout.split()) == {"litellm/claude-sonnet-4-5", "litellm/claude-haiku-4-5", "litellm/claude-opus-4"}


@pytest.mark.opencode
@pytest.mark.slow
def test_opencode_reads_the_managed_layer_of_the_test_not_of_the_machine(home: Path, keyed_env: str, cli) -> None:
    """OpenCode merges a machine-wide managed layer (/etc/opencode) into every config, and a
    machine where the agent once ran as root has one. The tests point OpenCode's managed dir at
    their own: a value planted there shows up, so /etc/opencode is not what the tests read."""
    binary = require("WA_OPENCODE", "the OpenCode binary (npm opencode-ai)")
    assert cli("bootstrap", "-q").code == 0
    managed = Path(os.environ["WORKSPACE_AGENT_MANAGED_DIR"])
    managed.mkdir(parents=True, exist_ok=True)
    (managed / "opencode.json").write_text(json.dumps({"share": "disabled", "username": "managed-by-test"}))
    shown = run_opencode(binary, home, "debug", "config")
    assert shown.returncode == 0, shown.stderr
    merged = json.loads(shown.stdout[shown.stdout.index("{"):])
    assert merged["username"] == "managed-by-test"


@pytest.mark.opencode
@pytest.mark.slow
def test_opencode_refuses_config_without_key_file(home: Path, keyed_env: str, cli) -> None:
    """Why the agent never writes opencode.json without the key file: OpenCode would not start."""
    binary = require("WA_OPENCODE", "the OpenCode binary (npm opencode-ai)")
    cli("bootstrap", "-q")
    Paths.for_home(home).key_file.unlink()
    shown = run_opencode(binary, home, "debug", "config")
    assert shown.returncode != 0


@pytest.mark.roo
@pytest.mark.parametrize("level", ["standard", "design-first", "unrestricted"])
def test_roo_import_file_passes_roo_code_schemas(home: Path, keyed_env: str, cli, monkeypatch, level: str) -> None:
    types_dir = require("WA_ROO_TYPES_DIR", "@roo-code/types")
    monkeypatch.setenv("ENFORCEMENT_LEVEL", level)
    cli("bootstrap", "-q")
    target = Paths.for_home(home).roo_import_file
    checked = subprocess.run(
        ["node", str(REPO / "tests/node/validate_roo.cjs"), types_dir, str(target)], capture_output=True, text=True, timeout=60, check=False
    )
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout.strip() == "valid"


@pytest.mark.roo
def test_roo_validator_rejects_a_wrong_type(tmp_path: Path) -> None:
    """The validator itself can fail: a wrong type and an unknown key are caught."""
    types_dir = require("WA_ROO_TYPES_DIR", "@roo-code/types")
    bad = tmp_path / "bad.json"
    for doc in (
        {"providerProfiles": {"currentApiConfigName": "x", "apiConfigs": {"x": {"id": "a", "apiProvider": "openai", "openAiStreamingEnabled": "yes"}}}},
        {"providerProfiles": {"currentApiConfigName": "x", "apiConfigs": {"x": {"id": "a", "apiProvider": "openai", "apiKeyTypo": "k"}}}},
    ):
        bad.write_text(json.dumps(doc))
        checked = subprocess.run(["node", str(REPO / "tests/node/validate_roo.cjs"), types_dir, str(bad)], capture_output=True, text=True, check=False)
        assert checked.returncode != 0
