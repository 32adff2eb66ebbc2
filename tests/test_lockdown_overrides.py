"""Finding repositories' settings files and what they override (facts only)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workspace_agent.errors import AgentError
from workspace_agent.lockdown import overrides
from workspace_agent.lockdown.spec import AuditLimits

LIMITS = AuditLimits(max_depth=2, max_dirs=1000, skip_dirs=frozenset({"node_modules"}), skip_hidden=True)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"k.a": True}, []),
        ({"k.a": 1}, [("k.a", 1)]),  # VS Code ignores 1 for a boolean: it is not the locked value
        ({"k.a": False, "other.key": 3}, [("k.a", False)]),
        ({"k.o": {"y": 2, "x": 1}}, []),  # key order does not matter
        ({"k.o": {"x": 1}}, [("k.o", {"x": 1})]),
        ({}, []),
    ],
)
def test_differing_is_strict_json_equality(values: dict, expected: list) -> None:
    assert overrides.differing(values, {"k.a": True, "k.o": {"x": 1, "y": 2}}) == expected


def test_project_roots_parsing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert overrides.project_roots("", home) == [home]
    assert overrides.project_roots("~:/srv/code:~/work: ~/work ", home) == [home, Path("/srv/code"), home / "work"]
    with pytest.raises(AgentError, match="'src' is not an absolute path"):
        overrides.project_roots("~:src", home)


def test_walk_reads_each_folders_vscode_but_skips_hidden_deep_and_linked_dirs(tmp_path: Path) -> None:
    wanted = [tmp_path / ".vscode" / "settings.json", tmp_path / "p" / ".vscode" / "settings.json", tmp_path / "p" / "q" / "x.code-workspace"]
    skipped = [
        tmp_path / "p" / "q" / "r" / ".vscode" / "settings.json",  # depth 3 > 2
        tmp_path / "node_modules" / ".vscode" / "settings.json",
        tmp_path / ".local" / "y.code-workspace",
        tmp_path / "p" / ".vscode" / "other.json",
    ]
    for path in wanted + skipped:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
    (tmp_path / "p" / "up").symlink_to(tmp_path, target_is_directory=True)
    walk = overrides.settings_files([tmp_path], LIMITS)
    assert walk.files == sorted(wanted) and not walk.truncated


def test_missing_root_is_no_files(tmp_path: Path) -> None:
    assert overrides.settings_files([tmp_path / "nope"], LIMITS).files == []


def test_code_workspace_settings_that_are_not_an_object_are_a_problem(tmp_path: Path) -> None:
    path = tmp_path / "a.code-workspace"
    path.write_text('{"folders": [], "settings": []}')
    found = overrides.read_overrides(path, {"k.a": True})
    assert found.overrides == [] and found.problem == '"settings" is not an object'


def test_rewrite_refuses_a_symlinked_settings_file(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.json"
    real.write_text('{"k.a": false}')
    link = tmp_path / "p" / ".vscode" / "settings.json"
    link.parent.mkdir(parents=True)
    link.symlink_to(real)
    found = overrides.read_overrides(link, {"k.a": True})
    assert found.overrides == [("k.a", False)]
    with pytest.raises(AgentError, match="symbolic link"):
        overrides.rewrite(found, {"k.a": True})
    assert real.read_text() == '{"k.a": false}'
