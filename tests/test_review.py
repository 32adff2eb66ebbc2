"""Review workflows from prompts/review/: parsed strictly, then loaded by Roo Code's schemas and by
the real OpenCode binary, with the enforcement level still in place for every client."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.heavy import require, run_opencode
from workspace_agent import data, review
from workspace_agent.errors import AgentError
from workspace_agent.paths import Paths

GOOD = """+++
slug = "a11y-review"
name = "Accessibility Review"
description = "Review UI code for accessibility"
when_to_use = "Before merging UI changes."
role = "You are an accessibility reviewer."
+++
Check labels, contrast and keyboard use.
"""


def test_parse_a_good_file() -> None:
    workflow = review.parse(GOOD, "a11y.md")
    assert workflow.slug == "a11y-review"
    assert workflow.instructions == "Check labels, contrast and keyboard use.\n"
    assert workflow.prompt == "You are an accessibility reviewer.\n\nCheck labels, contrast and keyboard use.\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no front matter\n", "must start with TOML front matter"),
        (GOOD.replace('name = "Accessibility Review"\n', ""), "needs a non-empty text for name"),
        (GOOD.replace('slug = "a11y-review"', 'slug = "A11y review"'), "must be lower-case letters"),
        (GOOD.replace('role = "', 'colour = "x"\nrole = "'), "unknown front matter key 'colour'"),
        (GOOD.replace('slug = "a11y-review"', "slug = a11y"), "is not valid TOML"),
        (GOOD.split("+++\nCheck")[0] + "+++\n\n", "instructions after the front matter are empty"),
    ],
    ids=["no-front-matter", "missing-name", "bad-slug", "unknown-key", "bad-toml", "empty-body"],
)
def test_parse_rejects_with_a_sentence(text: str, message: str) -> None:
    with pytest.raises(AgentError, match=message) as caught:
        review.parse(text, "bad.md")
    assert caught.value.message.startswith("bad.md: ")


def test_duplicate_slugs_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a.md").write_text(GOOD)
    (tmp_path / "b.md").write_text(GOOD)
    with pytest.raises(AgentError, match="is used by another review workflow"):
        review.load(tmp_path)


def test_shipped_workflows() -> None:
    workflows = review.load()
    assert [w.slug for w in workflows] == ["performance-review", "security-review", "style-review"]
    security = next(w for w in workflows if w.slug == "security-review")
    for topic in ("SQL", "XSS", "CSRF", "authentication", "sensitive data", "line numbers", "remediation"):
        assert topic in security.instructions


def test_workflows_are_part_of_the_desired_state(home: Path, keyed_env: str, cli, monkeypatch, tmp_path: Path) -> None:
    """A changed workflow changes the fingerprint drift reports carry."""
    first = json.loads(cli("plan", "--json").out)["desired_sha256"]
    from workspace_agent.config import load_config
    from workspace_agent.desired import build_desired

    desired = build_desired(load_config({}, os.environ, {}), {})
    changed = desired._replace(reviews=desired.reviews[:1])
    assert desired.fingerprint() == first and changed.fingerprint() != first


def test_roo_import_file_carries_the_modes(home: Path, keyed_env: str, cli) -> None:
    cli("bootstrap", "-q")
    doc = json.loads(Paths.for_home(home).roo_import_file.read_text())
    modes = {m["slug"]: m for m in doc["globalSettings"]["customModes"]}
    assert set(modes) == {"security-review", "performance-review", "style-review"}
    assert modes["security-review"]["groups"] == ["read", "command"], "a review does not edit files"
    assert doc["globalSettings"]["customInstructions"] == data.prompt_text("standard"), "enforcement applies on top"
    assert all(doc["providerProfiles"]["modeApiConfigs"][slug] == "litellm-default" for slug in modes)


def _validate(types_dir: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", str(REPO / "tests/node/validate_roo_modes.cjs"), types_dir, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.roo
@pytest.mark.parametrize("level", ["standard", "design-first", "unrestricted"])
def test_roo_import_with_modes_passes_roo_code_schemas(home: Path, keyed_env: str, cli, monkeypatch, level: str) -> None:
    types_dir = require("WA_ROO_TYPES_DIR", "@roo-code/types")
    monkeypatch.setenv("ENFORCEMENT_LEVEL", level)
    cli("bootstrap", "-q")
    checked = _validate(types_dir, Paths.for_home(home).roo_import_file)
    assert checked.returncode == 0, checked.stderr
    assert json.loads(checked.stdout)["modes"] == ["performance-review", "security-review", "style-review"]


@pytest.mark.roo
@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda m: m.update(groups=["read", "read"]), 1),  # duplicate groups
        (lambda m: m.update(slug="security review"), 1),  # slug with a space
        (lambda m: m.update(colour="red"), 2),  # a key the schema would drop
    ],
    ids=["duplicate-group", "bad-slug", "dropped-key"],
)
def test_the_roo_validator_can_fail(home: Path, keyed_env: str, cli, tmp_path: Path, mutate, code: int) -> None:
    types_dir = require("WA_ROO_TYPES_DIR", "@roo-code/types")
    cli("bootstrap", "-q")
    doc = json.loads(Paths.for_home(home).roo_import_file.read_text())
    mutate(doc["globalSettings"]["customModes"][0])
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps(doc))
    assert _validate(types_dir, broken).returncode == code




@pytest.mark.opencode
@pytest.mark.slow
def test_opencode_loads_the_review_agents(home: Path, keyed_env: str, cli) -> None:
    binary = require("WA_OPENCODE", "the OpenCode binary (npm opencode-ai)")
    cli("bootstrap", "-q")
    shown = run_opencode(binary, home, "debug", "config")
    assert shown.returncode == 0, shown.stderr
    merged = json.loads(shown.stdout[shown.stdout.index("{"):])
    agents = merged["agent"]
    assert {"security-review", "performance-review", "style-review"} <= set(agents)
    assert agents["security-review"]["permission"] == {"edit": "deny"}
    assert agents["style-review"]["prompt"].startswith("You are a code reviewer")
    assert merged["instructions"] == [str(Paths.for_home(home).opencode_enforcement)], "enforcement applies on top"

    listed = run_opencode(binary, home, "agent", "list")
    assert listed.returncode == 0, listed.stderr
    for slug in ("security-review", "performance-review", "style-review"):
        assert f"{slug} (all)" in listed.stdout
