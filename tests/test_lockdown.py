"""The lockdown through the CLI: a user's change is drift in `check` and `bootstrap` puts it back."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_lockdown_extensions import add_extension
from workspace_agent import jsonc
from workspace_agent.lockdown.spec import load
from workspace_agent.paths import Paths

LOCKED = load({}).settings


def rules_of(result) -> dict[str, dict]:
    return {r["rule_id"]: r for r in json.loads(result.out)["rules"]}


def lockdown_states(result) -> dict[str, str]:
    return {
        rule_id: r["state"]
        for rule_id, r in rules_of(result).items()
        if rule_id.startswith(("vscode.", "extension.", "codeserver.", "coder."))
    }


def test_fresh_home_is_drift_then_corrected_then_compliant(home: Path, keyed_env: str, cli) -> None:
    checked = cli("check", "--json")
    assert checked.code == 2
    states = lockdown_states(checked)
    assert {k for k, v in states.items() if v == "drift"} == {f"vscode.setting.{k}" for k in LOCKED}
    booted = cli("bootstrap", "--json")
    assert booted.code == 0
    assert {k for k, v in lockdown_states(booted).items() if v == "corrected"} == {f"vscode.setting.{k}" for k in LOCKED}
    again = cli("check", "--json")
    assert again.code == 0 and set(lockdown_states(again).values()) == {"compliant"}
    merged = jsonc.loads(Paths.for_home(home).user_settings.read_text())
    assert {k: merged[k] for k in LOCKED} == LOCKED


def test_tampered_home_shows_each_change_as_drift_and_bootstrap_puts_it_back(home: Path, keyed_env: str, cli) -> None:
    assert cli("bootstrap", "-q").code == 0
    paths = Paths.for_home(home)
    # The user edits settings in the UI: turns chat back on, allows Copilot, adds their own keys.
    text = paths.user_settings.read_text()
    text = jsonc.set_key(text, "chat.disableAIFeatures", False)
    text = jsonc.set_key(text, "extensions.allowed", {"*": True})
    text = text.replace("{", '{\n    // my font\n    "editor.fontSize": 16,', 1)
    paths.user_settings.write_text(text)
    paths.machine_settings.parent.mkdir(parents=True)
    paths.machine_settings.write_text('{"telemetry.telemetryLevel": "all"}')
    add_extension(paths.extensions_dir, "sourcegraph.cody-ai-1.40.0", "sourcegraph", "cody-ai", "1.40.0")

    checked = cli("check", "--json")
    assert checked.code == 2
    drifted = {k for k, v in lockdown_states(checked).items() if v == "drift"}
    assert drifted == {
        "vscode.setting.chat.disableAIFeatures",
        "vscode.setting.extensions.allowed",
        "vscode.machine-override",
        "extension.absent.sourcegraph.cody-ai",
    }
    rules = rules_of(checked)
    assert rules["extension.absent.sourcegraph.cody-ai"]["before"] == "sourcegraph.cody-ai 1.40.0 (extensions.json)"
    assert rules["vscode.machine-override"]["before"] == 'telemetry.telemetryLevel="all"'

    booted = cli("bootstrap", "--json")
    assert {k for k, v in lockdown_states(booted).items() if v == "corrected"} == drifted
    assert cli("check").code == 0
    fixed = paths.user_settings.read_text()
    assert "// my font" in fixed and jsonc.loads(fixed)["editor.fontSize"] == 16
    assert jsonc.loads(fixed)["chat.disableAIFeatures"] is True
    assert not (paths.extensions_dir / "sourcegraph.cody-ai-1.40.0").exists()
    assert jsonc.loads(paths.machine_settings.read_text()) == {"telemetry.telemetryLevel": "off"}


def test_lockdown_applies_with_no_ai_assistant(home: Path, keyed_env: str, cli) -> None:
    booted = cli("bootstrap", "--json", "--ai-assistant", "none")
    assert lockdown_states(booted)["vscode.setting.chat.disableAIFeatures"] == "corrected"
    assert jsonc.loads(Paths.for_home(home).user_settings.read_text())["chat.disableAIFeatures"] is True


def test_repository_override_stays_reported_until_the_policy_says_fix(home: Path, keyed_env: str, cli, tmp_path: Path, monkeypatch) -> None:
    repo_settings = tmp_path / "code" / "api" / ".vscode" / "settings.json"
    repo_settings.parent.mkdir(parents=True)
    repo_settings.write_text('{"chat.disableAIFeatures": false}')
    monkeypatch.setenv("WORKSPACE_AGENT_PROJECT_ROOTS", f"~:{tmp_path / 'code'}")
    booted = cli("bootstrap", "--json")
    rule = rules_of(booted)["vscode.workspace-overrides"]
    assert rule["state"] == "drift" and rule["before"] == f"{repo_settings}: chat.disableAIFeatures=false"
    assert rule["target"] == f"~:{tmp_path / 'code'}"
    assert cli("check").code == 2, "a reported override keeps check failing, so it is seen"
    assert repo_settings.read_text() == '{"chat.disableAIFeatures": false}'

    (tmp_path / "policy.toml").write_text("[lockdown]\nfix_workspace_overrides = true\n")
    assert rules_of(cli("bootstrap", "--json"))["vscode.workspace-overrides"]["state"] == "corrected"
    assert jsonc.loads(repo_settings.read_text()) == {"chat.disableAIFeatures": True}
    assert cli("check").code == 0


def test_text_table_shows_report_only_notes(home: Path, keyed_env: str, cli) -> None:
    out = cli("check").out
    row = next(line for line in out.splitlines() if "coder.server-env" in line)
    assert row.split()[0] == "ok" and "not verifiable from a workspace" in row
