"""The engine: facts in → results and changes out; apply writes only what drifted."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workspace_agent.errors import AgentError
from workspace_agent.plan import ActionFact, ActionRule, FileRule, apply_plan, build_plan, render_diff
from workspace_agent.resources import generated_file, json_key


def states(results) -> dict[str, str]:
    return {r.rule_id: r.state for r in results}


def test_absent_file_is_drift_then_corrected_then_compliant(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b.txt"
    rules = [generated_file("t.file", target, "hello\n")]
    plan = build_plan(rules)
    assert states(plan.results) == {"t.file": "drift"}
    assert not target.exists(), "planning must not write"
    assert states(apply_plan(plan)) == {"t.file": "corrected"}
    assert target.read_text() == "hello\n"
    again = build_plan(rules)
    assert states(again.results) == {"t.file": "compliant"} and again.files == []


def test_rules_on_one_file_fold_into_one_write(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('// mine\n{\n    "editor.fontSize": 13, /* keep */\n}\n')
    rules = [json_key("k.a", settings, "a", True), json_key("k.b", settings, "b", {"*": False})]
    plan = build_plan(rules)
    assert len(plan.files) == 1
    assert [r.before for r in plan.results] == ["(unset)", "(unset)"]
    assert [r.after for r in plan.results] == ["true", '{"*": false}']
    apply_plan(plan)
    text = settings.read_text()
    assert "// mine" in text and "/* keep */" in text and '"editor.fontSize": 13' in text
    assert states(build_plan(rules).results) == {"k.a": "compliant", "k.b": "compliant"}


def test_compliant_key_keeps_file_byte_identical(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    original = '{\r\n  // c\r\n  "a": true,\r\n}'
    settings.write_bytes(original.encode())
    plan = build_plan([json_key("k.a", settings, "a", True)])
    assert plan.files == [] and states(plan.results) == {"k.a": "compliant"}
    assert settings.read_bytes() == original.encode()


def test_broken_jsonc_is_an_error_and_the_file_is_untouched(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{ "a": tru')
    other = tmp_path / "other.txt"
    plan = build_plan([json_key("k.a", settings, "a", True), generated_file("o", other, "x")])
    result = {r.rule_id: r for r in plan.results}
    assert result["k.a"].state == "error" and "not valid JSONC" in (result["k.a"].message or "")
    assert result["o"].state == "drift"
    final = states(apply_plan(plan))
    assert final == {"k.a": "error", "o": "corrected"}
    assert settings.read_text() == '{ "a": tru'


@pytest.mark.parametrize("kind", ["directory", "symlink"])
def test_unusable_paths_are_errors_not_overwritten(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "settings.json"
    if kind == "directory":
        target.mkdir()
    else:
        real = tmp_path / "real.json"
        real.write_text("{}")
        target.symlink_to(real)
    plan = build_plan([json_key("k", target, "a", 1)])
    assert states(plan.results) == {"k": "error"}
    assert kind.replace("symlink", "symbolic link") in (plan.results[0].message or "")
    apply_plan(plan)
    if kind == "symlink":
        assert (tmp_path / "real.json").read_text() == "{}"


def test_mode_drift_alone_is_fixed_without_rewrite(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-secret-value-123456\n")
    key.chmod(0o644)
    inode = key.stat().st_ino
    rules = [generated_file("key", key, "sk-secret-value-123456\n", mode=0o600, secret=True)]
    plan = build_plan(rules, secrets=["sk-secret-value-123456"])
    assert [(r.state, r.before, r.after) for r in plan.results] == [("drift", "mode 0644", "mode 0600")]
    apply_plan(plan)
    assert key.stat().st_mode & 0o777 == 0o600 and key.stat().st_ino == inode


def test_existing_mode_is_kept_when_rule_sets_none(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("old")
    target.chmod(0o640)
    apply_plan(build_plan([generated_file("f", target, "new")]))
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o640


def test_secret_diff_is_redacted(tmp_path: Path) -> None:
    secret = "sk-live-ABCDEFGHIJKLMNOP9876"
    plan = build_plan([generated_file("s", tmp_path / "s.json", f'{{"k": "{secret}"}}\n', mode=0o600, secret=True)], [secret])
    diff = render_diff(plan)
    assert secret not in diff and "sk-…9876" in diff
    assert plan.results[0].after == "set"


def test_apply_refolds_when_the_file_changed_after_planning(tmp_path: Path) -> None:
    """A user edit between plan and apply is kept: apply folds again on what is there."""
    settings = tmp_path / "settings.json"
    settings.write_text('{"a": false}')
    plan = build_plan([json_key("k.a", settings, "a", True)])
    settings.write_text('{"a": false, "mine": 1}')
    apply_plan(plan)
    import json5

    assert json5.loads(settings.read_text()) == {"a": True, "mine": 1}


def test_a_user_file_emptied_after_planning_is_left_for_its_writer(tmp_path: Path) -> None:
    """Truncated by a program saving in place: folding "" would keep only our key, and the
    program's text would then go into the inode our rename replaced."""
    settings = tmp_path / "settings.json"
    settings.write_text('{"a": false, "mine": 1}')
    plan = build_plan([json_key("k.a", settings, "a", True)])
    settings.write_text("")
    result = apply_plan(plan)[0]
    assert result.state == "error" and "was emptied while the agent was about to edit it" in (result.message or "")
    assert settings.read_text() == ""
    settings.write_text("")  # an empty file seen as such from the start is simply filled
    assert apply_plan(build_plan([json_key("k.a", settings, "a", True)]))[0].state == "corrected"


def test_actions_observe_fix_and_report_only(tmp_path: Path) -> None:
    marker = tmp_path / "installed"
    marker.write_text("")

    def observe() -> ActionFact:
        return ActionFact(not marker.exists(), before="installed" if marker.exists() else None, after="absent")

    def failing() -> None:
        raise AgentError("uninstall failed: permission denied")

    fixable = ActionRule("ext.a", "publisher.a", observe, lambda: marker.unlink())
    broken = ActionRule("ext.b", "publisher.b", lambda: ActionFact(False, "installed", "absent"), failing)
    report_only = ActionRule("ext.c", "publisher.c", lambda: ActionFact(False, "x", "y"), None)
    plan = build_plan([fixable, broken, report_only])
    assert states(plan.results) == {"ext.a": "drift", "ext.b": "drift", "ext.c": "drift"}
    assert "~ ext.a publisher.a: installed → absent" in render_diff(plan)
    final = {r.rule_id: r for r in apply_plan(plan)}
    assert final["ext.a"].state == "corrected" and not marker.exists()
    assert final["ext.b"].state == "error" and final["ext.b"].message == "uninstall failed: permission denied"
    assert final["ext.c"].state == "drift"


def test_write_failure_becomes_rule_error(tmp_path: Path) -> None:
    """A parent that is a file (works as root too, unlike permission bits)."""
    blocker = tmp_path / "config"
    blocker.write_text("not a directory")
    ok_file = tmp_path / "ok.txt"
    final = apply_plan(build_plan([generated_file("f", blocker / "sub" / "f", "x"), generated_file("ok", ok_file, "y")]))
    assert final[0].state == "error" and "not a directory" in (final[0].message or "")
    assert final[1].state == "corrected" and ok_file.read_text() == "y"
    assert blocker.read_text() == "not a directory"


def test_render_none_removes_file(tmp_path: Path) -> None:
    target = tmp_path / "obsolete"
    target.write_text("x")
    rules = [FileRule("gone", target, lambda _t: None)]
    assert states(build_plan(rules).results) == {"gone": "drift"}
    apply_plan(build_plan(rules))
    assert not target.exists()
    assert states(build_plan(rules).results) == {"gone": "compliant"}
