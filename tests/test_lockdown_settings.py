"""Layer 2 on temp dirs: the locked keys merged into User settings, Machine and repository overrides."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workspace_agent import jsonc
from workspace_agent.lockdown import settings
from workspace_agent import data
from workspace_agent.lockdown.spec import build, load
from workspace_agent.paths import Paths
from workspace_agent.plan import apply_plan, build_plan

LOCKDOWN = load({})
LOCKED = LOCKDOWN.settings
FIXING = load({"lockdown": {"fix_workspace_overrides": True}})


def user_rules(home: Path, lockdown=LOCKDOWN):
    return settings.rules(lockdown, Paths.for_home(home), [home / "src"])


def states(results) -> dict[str, str]:
    return {r.rule_id: r.state for r in results}


def by_id(results):
    return {r.rule_id: r for r in results}


# Settings files people really have: comments everywhere, trailing commas, their own keys,
# a locked key with the wrong value, CRLF, a BOM, tabs, an empty file, a comment-only file.
VARIANTS = {
    "comments-and-own-keys": (
        "// my editor\n{\n    /* font */ \"editor.fontSize\": 15, // big\n"
        "    \"workbench.colorTheme\": \"Solarized Dark\",\n    // chat please\n"
        "    \"chat.disableAIFeatures\": false,\n    \"files.exclude\": {\"**/.git\": true,},\n}\n"
    ),
    "crlf-tabs-trailing-comma": '{\r\n\t"editor.tabSize": 2,\r\n\t"telemetry.telemetryLevel": "all",\r\n}\r\n',
    "bom": '\ufeff{"editor.wordWrap": "on"}',
    "wrong-types": '{"chat.disableAIFeatures": 1, "github.copilot.enable": {"*": true, "python": true}, "extensions.allowed": {"*": true}}',
    "one-line": '{"a.b": 1, "chat.agent.enabled": true}',
    "empty": "",
    "comment-only": "// nothing yet\n",
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_user_settings_variant_gets_every_locked_key_and_keeps_the_rest(tmp_path: Path, name: str) -> None:
    original = VARIANTS[name]
    path = Paths.for_home(tmp_path).user_settings
    path.parent.mkdir(parents=True)
    path.write_bytes(original.encode())
    theirs = jsonc.loads(original)
    rules = user_rules(tmp_path)

    plan = build_plan(rules)
    drifted = {r.rule_id for r in plan.results if r.state == "drift"}
    expected = {f"vscode.setting.{k}" for k, v in LOCKED.items() if settings.show(theirs.get(k)) != settings.show(v)}
    assert drifted == expected
    assert path.read_bytes() == original.encode(), "planning writes nothing"

    apply_plan(plan)
    text = path.read_bytes().decode("utf-8")  # no newline translation
    merged = jsonc.loads(text)
    for key, value in LOCKED.items():
        assert settings.show(merged[key]) == settings.show(value), key
    for key, value in theirs.items():
        if key not in LOCKED:
            assert merged[key] == value, f"the user's {key} survives"
    for comment in ("// my editor", "/* font */", "// big", "// chat please", "// nothing yet"):
        if comment in original:
            assert comment in text
    if "\r\n" in original:
        assert text.count("\n") == text.count("\r\n"), "CRLF stays CRLF"
    if original.startswith("\ufeff"):
        assert text.startswith("\ufeff")

    again = build_plan(rules)
    assert again.files == [] and {r.state for r in again.results if r.rule_id.startswith("vscode.setting.")} == {"compliant"}


def test_user_edit_of_one_key_is_drift_on_that_rule_only(tmp_path: Path) -> None:
    rules = user_rules(tmp_path)
    apply_plan(build_plan(rules))
    path = Paths.for_home(tmp_path).user_settings
    path.write_text(jsonc.set_key(path.read_text(), "chat.disableAIFeatures", False))
    plan = build_plan(rules)
    assert [r.rule_id for r in plan.results if r.state == "drift"] == ["vscode.setting.chat.disableAIFeatures"]
    result = by_id(plan.results)["vscode.setting.chat.disableAIFeatures"]
    assert (result.before, result.after) == ("false", "true")
    assert states(apply_plan(plan))["vscode.setting.chat.disableAIFeatures"] == "corrected"


def test_broken_user_settings_are_an_error_and_untouched(tmp_path: Path) -> None:
    path = Paths.for_home(tmp_path).user_settings
    path.parent.mkdir(parents=True)
    path.write_text('{"editor.fontSize": 14,, }')
    plan = build_plan(user_rules(tmp_path))
    errors = [r for r in plan.results if r.rule_id.startswith("vscode.setting.")]
    assert {r.state for r in errors} == {"error"}
    assert "not valid JSONC" in (errors[0].message or "") and "left untouched" in (errors[0].message or "")
    apply_plan(plan)
    assert path.read_text() == '{"editor.fontSize": 14,, }'


def test_machine_settings_override_is_put_back_without_adding_keys(tmp_path: Path) -> None:
    machine = Paths.for_home(tmp_path).machine_settings
    machine.parent.mkdir(parents=True)
    original = '{\n  // set by someone\n  "chat.disableAIFeatures": false,\n  "editor.fontFamily": "Fira Code",\n  "telemetry.telemetryLevel": "off",\n}\n'
    machine.write_text(original)
    plan = build_plan(user_rules(tmp_path))
    result = by_id(plan.results)["vscode.machine-override"]
    assert result.state == "drift"
    assert (result.before, result.after) == ("chat.disableAIFeatures=false", "no override")
    apply_plan(plan)
    fixed = machine.read_text()
    assert jsonc.loads(fixed) == {"chat.disableAIFeatures": True, "editor.fontFamily": "Fira Code", "telemetry.telemetryLevel": "off"}
    assert "// set by someone" in fixed
    assert by_id(build_plan(user_rules(tmp_path)).results)["vscode.machine-override"].state == "compliant"


def test_no_machine_settings_is_compliant_and_not_created(tmp_path: Path) -> None:
    plan = build_plan(user_rules(tmp_path))
    assert by_id(plan.results)["vscode.machine-override"].state == "compliant"
    apply_plan(plan)
    assert not Paths.for_home(tmp_path).machine_settings.exists()


def make_repos(root: Path) -> dict[str, Path]:
    """A project tree with overrides where VS Code reads them, and decoys where it does not."""
    files = {
        "repo": root / "api" / ".vscode" / "settings.json",
        "workspace": root / "team.code-workspace",
        "fine": root / "web" / ".vscode" / "settings.json",
        "node_modules": root / "web" / "node_modules" / "pkg" / ".vscode" / "settings.json",
        "hidden": root / ".cache" / "x" / ".vscode" / "settings.json",
        "deep": root / "a" / "b" / "c" / "d" / "e" / ".vscode" / "settings.json",
    }
    for path in files.values():
        path.parent.mkdir(parents=True, exist_ok=True)
    files["repo"].write_text('{\n  // the team wants chat\n  "chat.disableAIFeatures": false,\n  "editor.tabSize": 4\n}\n')
    files["workspace"].write_text(
        '{\n\t"folders": [{"path": "api"}],\n\t"settings": {\n\t\t// hmm\n\t\t"github.copilot.enable": {"*": true},\n\t\t"files.autoSave": "on",\n\t},\n}\n'
    )
    files["fine"].write_text('{"chat.disableAIFeatures": true, "editor.tabSize": 2}')
    for decoy in ("node_modules", "hidden", "deep"):
        files[decoy].write_text('{"chat.agent.enabled": true}')
    (root / "web" / "loop").symlink_to(root, target_is_directory=True)  # a link loop is not followed
    return files


def test_repository_overrides_are_reported_with_file_key_and_value_and_not_rewritten(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_repos(src)
    before = {k: p.read_bytes() for k, p in files.items()}
    plan = build_plan(user_rules(tmp_path))
    result = by_id(plan.results)["vscode.workspace-overrides"]
    assert result.state == "drift"
    assert result.before == (
        '~/src/api/.vscode/settings.json: chat.disableAIFeatures=false; '
        '~/src/team.code-workspace: github.copilot.enable={"*": true}'
    )
    assert "fix_workspace_overrides = true" in (result.message or "")
    final = by_id(apply_plan(plan))["vscode.workspace-overrides"]
    assert final.state == "drift", "report-only: bootstrap leaves the user's repositories alone"
    assert {k: p.read_bytes() for k, p in files.items()} == before


def test_policy_can_make_bootstrap_fix_repository_overrides(tmp_path: Path) -> None:
    src = tmp_path / "src"
    files = make_repos(src)
    plan = build_plan(user_rules(tmp_path, FIXING))
    assert by_id(plan.results)["vscode.workspace-overrides"].state == "drift"
    assert by_id(apply_plan(plan))["vscode.workspace-overrides"].state == "corrected"
    repo = files["repo"].read_text()
    assert "// the team wants chat" in repo and jsonc.loads(repo) == {"chat.disableAIFeatures": True, "editor.tabSize": 4}
    workspace = jsonc.loads(files["workspace"].read_text())
    assert workspace["settings"] == {"github.copilot.enable": {"*": False}, "files.autoSave": "on"}
    assert workspace["folders"] == [{"path": "api"}]
    assert "// hmm" in files["workspace"].read_text()
    assert by_id(build_plan(user_rules(tmp_path, FIXING)).results)["vscode.workspace-overrides"].state == "compliant"


def test_unreadable_repository_settings_are_reported_not_guessed(tmp_path: Path) -> None:
    broken = tmp_path / "src" / "p" / ".vscode" / "settings.json"
    broken.parent.mkdir(parents=True)
    broken.write_text('{"chat.disableAIFeatures": false')
    result = by_id(build_plan(user_rules(tmp_path)).results)["vscode.workspace-overrides"]
    assert result.state == "drift"
    assert result.before.startswith("~/src/p/.vscode/settings.json: not valid JSONC (line 1:")
    fixing = by_id(apply_plan(build_plan(user_rules(tmp_path, FIXING))))["vscode.workspace-overrides"]
    assert fixing.state == "error" and "could not check" in (fixing.message or "")


def test_walk_budget_is_reported(tmp_path: Path) -> None:
    shipped = data.settings_file("lockdown")
    limited = build({**shipped, "workspace_audit": {**shipped["workspace_audit"], "max_dirs": 3}}, {})
    for n in range(6):
        (tmp_path / "src" / f"d{n}").mkdir(parents=True)
    result = by_id(build_plan(user_rules(tmp_path, limited)).results)["vscode.workspace-overrides"]
    assert result.state == "compliant" and "stopped after 3 directories" in (result.message or "")


def test_long_reports_are_bounded(tmp_path: Path) -> None:
    for n in range(200):
        path = tmp_path / "src" / f"repository-with-a-long-name-{n:03d}" / ".vscode" / "settings.json"
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps({"chat.disableAIFeatures": False, "telemetry.telemetryLevel": "all"}))
    result = by_id(build_plan(user_rules(tmp_path)).results)["vscode.workspace-overrides"]
    assert len(result.before) <= settings.MAX_REPORT_CHARS + 40
    assert result.before.endswith("more file(s)")
