"""dockerfile/ cannot be built here (no Docker engine), so it is kept honest against the code:
the snippets say what settings/lockdown.toml says, the template passes only variables the agent
reads with values it accepts, and the commands the image and template run work."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from workspace_agent import data
from workspace_agent.clients import registry, zoo_code
from workspace_agent.config import ENFORCEMENT_LEVELS, SETTINGS
from workspace_agent.lockdown import codeserver
from workspace_agent.lockdown.spec import load

DOCKERFILE_DIR = REPO / "dockerfile"


def required_env() -> dict[str, str]:
    return {name: e.value for e in load({}).coder_env for name in e.names}


def test_compose_snippet_matches_lockdown_toml() -> None:
    doc = yaml.safe_load((DOCKERFILE_DIR / "coder-server-env.yaml").read_text())
    assert doc["services"]["coder"]["environment"] == required_env()


def test_helm_snippet_matches_lockdown_toml() -> None:
    doc = yaml.safe_load((DOCKERFILE_DIR / "coder-helm-values.yaml").read_text())
    assert {item["name"]: item["value"] for item in doc["coder"]["env"]} == required_env()


def test_dockerfile_deletes_what_the_rule_reports() -> None:
    text = (DOCKERFILE_DIR / "Dockerfile").read_text()
    for relative in (codeserver.BUILTIN_COPILOT, codeserver.COPILOT_RUNTIME):
        assert f"/usr/lib/code-server/{relative}" in text
    assert "workspace-agent bootstrap" in text
    assert re.search(r"^COPY dockerfile/workspace-start ", text, re.M)


def _template() -> str:
    return (DOCKERFILE_DIR / "coder-template.tf").read_text()


def _parameter_values(name: str) -> list[str]:
    block = _template().split(f'data "coder_parameter" "{name}"', 1)[1].split('\ndata "', 1)[0].split("\nresource ", 1)[0]
    return re.findall(r'^\s*value\s*=\s*"([^"]+)"', block, re.M)


def test_template_parameters_offer_only_values_the_agent_accepts() -> None:
    assert set(_parameter_values("ai_model")) <= set(data.settings_file("models")["models"])
    assert _parameter_values("ai_assistant") == list(registry.assistant_choices())
    assert set(_parameter_values("enforcement_level")) == set(ENFORCEMENT_LEVELS)


def test_template_assistant_options_are_the_registrys() -> None:
    """The options (names and values) are what `python -m workspace_agent.clients.registry` prints."""
    assert registry.template_options() in _template()
    assert registry.DEFAULT in _parameter_values("ai_assistant")
    assert f'default      = "{registry.DEFAULT}"' in _template().split('"ai_assistant"', 1)[1].split("option", 1)[0]


def test_image_and_template_ship_zoo_code_pinned_from_open_vsx() -> None:
    """Roo Code's repository is archived: the image carries Zoo Code, a pinned Open VSX .vsix."""
    docker = (DOCKERFILE_DIR / "Dockerfile").read_text()
    version = re.search(r"^ARG ZOO_CODE_VERSION=(\d+\.\d+\.\d+)$", docker, re.M)
    assert version, "ZOO_CODE_VERSION must be pinned to an exact version"
    assert "https://open-vsx.org/api/ZooCodeOrganization/zoo-code/${ZOO_CODE_VERSION}/file/" in docker
    assert "roo-cline.vsix" not in docker and "ROO_CODE_VERSION" not in docker
    for source in ("coder-template.tf", "workspace-start"):
        text = (DOCKERFILE_DIR / source).read_text()
        assert f"grep -qix '{zoo_code.EXTENSION_ID}'" in text, source
        assert "/opt/workspace-image/zoo-code.vsix" in text and "roo-cline.vsix" not in text, source


def test_template_env_names_are_ones_the_agent_reads() -> None:
    env_block = _template().split("  env = {", 1)[1].split("}", 1)[0]
    names = set(re.findall(r"^\s*([A-Z_]+)\s*=", env_block, re.M))
    read = {s.env for s in SETTINGS if s.env}
    assert names and names <= read, names - read
    assert {"CODER_WORKSPACE_ID", "CODER_WORKSPACE_OWNER", "PROVISIONER_SECRET", "AI_ASSISTANT"} <= names


def test_start_script_is_valid_shell() -> None:
    subprocess.run(["sh", "-n", str(DOCKERFILE_DIR / "workspace-start")], check=True)


# `workspace-agent …` where a shell command starts (not inside an echo'd message), up to an operator.
PATTERN = r"(?:^\s*|RUN\s+|!\s*|&&\s*|\|\|\s*|;\s*|\"\s*)workspace-agent ((?:bootstrap|check|plan|status)[^|;&)>\"\n\\]*)"


def _agent_commands(text: str) -> list[list[str]]:
    """Every `workspace-agent …` command line in a file (up to a shell operator)."""
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    return [shlex.split(m.group(1)) for m in re.finditer(PATTERN, code, re.M)]


@pytest.mark.parametrize("source", ["Dockerfile", "coder-template.tf", "workspace-start"])
def test_agent_commands_in_the_image_and_template_run(source: str, home: Path, keyed_env: str, cli) -> None:
    """The exact argument lists run at build, at start and by the dashboard metadata work here."""
    commands = _agent_commands((DOCKERFILE_DIR / source).read_text())
    assert commands
    assert cli("bootstrap", "-q").code == 0  # a started workspace (the key is in LITELLM_API_KEY)
    for args in commands:
        result = cli(*args)
        assert result.code == 0, f"workspace-agent {' '.join(args)}: {result.all}"
