"""The contract every registered AI client meets (clients/registry.py): one test set, run over each.

A new client module passes these before it has a test of its own: it is selected by its own
`ai_assistant` value and by `all`, it writes only the files it declares, a second bootstrap changes
nothing, a file that holds the key is 0600, it names models the workspace has, its policy table
(if any) is part of the one policy schema, and what it writes passes the check of the client
itself (OUTPUT_CHECKS: a registered client without one fails here).
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import REPO, TEST_KEY
from tests.heavy import require, run_opencode
from workspace_agent import policyfile
from workspace_agent.clients import claude_code, registry, zoo_code
from workspace_agent.clients.base import Client
from workspace_agent.config import AgentConfig, load_config
from workspace_agent.desired import Desired, build_desired
from workspace_agent.keysource import KeyResolution
from workspace_agent.plan import FileRule

CLIENTS = registry.clients()


def _desired(home: Path, client: Client) -> Desired:
    """As the CLI sees it in a test (managed dirs under tmp_path, from conftest's environment)."""
    return build_desired(load_config({"home": str(home), "ai_assistant": client.name}, os.environ, {}), {})


def test_registry_lists_the_four_clients_once() -> None:
    names = [c.name for c in CLIENTS]
    assert names == ["roo-code", "zoo-code", "opencode", "claude-code"]
    assert len(set(names)) == len(names) and len({c.title for c in CLIENTS}) == len(CLIENTS)


def test_every_choice_but_none_selects_a_client() -> None:
    choices = registry.assistant_choices()
    assert choices[-1] == registry.NONE and registry.DEFAULT in choices
    assert registry.selected(registry.NONE) == ()
    for choice in choices[:-1]:
        assert registry.selected(choice), choice
    assert registry.selected("all") == CLIENTS
    assert AgentConfig(home=Path("/home/coder")).ai_assistant == registry.DEFAULT


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name)
def test_declaration(client: Client) -> None:
    assert re.fullmatch(r"[a-z][a-z0-9]*(-[a-z0-9]+)*", client.name)
    assert client.title and client.name in client.assistants and "all" in client.assistants
    assert registry.NONE not in client.assistants
    assert registry.selected(client.name)[-1] is client or client in registry.selected(client.name)
    for key in client.settings_keys:
        assert "." in key, f"{key} is not a VS Code settings key"


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name)
@pytest.mark.parametrize("key", [TEST_KEY, None], ids=["key", "no-key"])
def test_rules_touch_only_declared_paths(client: Client, home: Path, key: str | None) -> None:
    desired = _desired(home, client)
    resolution = KeyResolution(key, "pasted" if key else "none", problem=None if key else "no key yet")
    rules = client.rules(desired, resolution)
    assert rules
    ids = [r.rule_id for r in rules]
    assert len(ids) == len(set(ids)), ids
    declared = set(client.paths(desired))
    for rule in rules:
        if isinstance(rule, FileRule):
            assert rule.path in declared, f"{rule.rule_id} writes {rule.path}, which {client.name} does not declare"
            assert rule.path.is_absolute()
            if rule.secret:
                assert rule.mode == 0o600, rule.rule_id


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name)
def test_bootstrap_alone_then_check_is_compliant_and_private(client: Client, home: Path, keyed_env: str, cli) -> None:
    first = cli("bootstrap", "--ai-assistant", client.name, "--detailed-exitcodes", "-q")
    assert first.code == 2, first.all  # something was written
    assert cli("bootstrap", "--ai-assistant", client.name, "--detailed-exitcodes", "-q").code == 0
    assert cli("check", "--ai-assistant", client.name, "-q").code == 0
    desired = _desired(home, client)
    written = [p for p in client.paths(desired) if p.exists()]
    assert written, f"{client.name} wrote none of its files"
    for path in written:
        if TEST_KEY in path.read_text(encoding="utf-8"):
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, f"{path} holds the key"


@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name)
def test_models_are_the_workspaces(client: Client, home: Path) -> None:
    desired = _desired(home, client)
    uses = client.models(desired)
    assert uses[0] == ("model", desired.model.litellm)
    roles = [role for role, _ in uses]
    assert set(roles) <= {"model", "small_model"} and len(roles) == len(set(roles))
    assert {model for _, model in uses} <= {m.litellm for m in desired.models}


@pytest.mark.parametrize("client", [c for c in CLIENTS if c.policy], ids=lambda c: c.name)
def test_policy_table_is_part_of_the_one_schema(client: Client) -> None:
    assert client.policy is not None
    assert policyfile.tables()[client.policy.name] is client.policy
    assert client.policy.keys and client.policy.check is not None
    client.policy.check({})  # an empty table is always valid


# --- each client's output, checked the way the client itself reads it ---------------------------


def _node_check(script: str, target: Path) -> None:
    types_dir = require("WA_ROO_TYPES_DIR", "@roo-code/types")
    node = require("node", "Node 24")
    checked = subprocess.run(
        [f"{node}/node", str(REPO / "tests/node" / script), types_dir, str(target)],
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert checked.returncode == 0 and checked.stdout.strip() == "valid", checked.stderr


def _check_roo(desired: Desired) -> None:
    _node_check("validate_roo.cjs", desired.paths.roo_import_file)  # @roo-code/types, as Roo Code imports


def _check_zoo(desired: Desired) -> None:
    _node_check("validate_zoo.cjs", zoo_code.import_file(desired))  # no [AutoImport] Warning


def _check_opencode(desired: Desired) -> None:
    binary = require("WA_OPENCODE", "the OpenCode binary (npm opencode-ai)")
    shown = run_opencode(binary, desired.paths.home, "debug", "config")
    assert shown.returncode == 0, shown.stderr
    merged = json.loads(shown.stdout[shown.stdout.index("{"):])
    assert merged["model"] == f"litellm/{desired.model.litellm}"  # unknown keys are dropped: ours survived
    assert merged["instructions"] == [str(desired.paths.opencode_enforcement)]


def _check_claude(desired: Desired) -> None:
    document = json.loads(claude_code.settings_file(desired).read_text())  # strict JSON, as Claude parses it
    assert claude_code.validate({key: document[key] for key in claude_code.DOCUMENTED_KEYS}) == []
    expected = claude_code.settings_document(desired)
    assert (document["apiKeyHelper"], document["model"]) == (expected["apiKeyHelper"], expected["model"])
    assert expected["env"].items() <= document["env"].items()  # the real CLI is run in test_claude_code.py


OUTPUT_CHECKS: dict[str, Callable[[Desired], None]] = {
    "roo-code": _check_roo,
    "zoo-code": _check_zoo,
    "opencode": _check_opencode,
    "claude-code": _check_claude,
}


def test_every_client_brings_an_output_check() -> None:
    assert set(OUTPUT_CHECKS) == {c.name for c in CLIENTS}


@pytest.mark.slow
@pytest.mark.parametrize("client", CLIENTS, ids=lambda c: c.name)
def test_what_the_client_gets_is_what_it_accepts(client: Client, home: Path, keyed_env: str, cli) -> None:
    assert cli("bootstrap", "--ai-assistant", client.name, "-q").code == 0
    OUTPUT_CHECKS[client.name](_desired(home, client))
