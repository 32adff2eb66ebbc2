"""fsio: facts about files, the atomic writer, leftovers of interrupted writes, read-only files."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from workspace_agent import fsio
from workspace_agent.errors import AgentError
from workspace_agent.plan import apply_plan, build_plan, sweep_interrupted
from workspace_agent.resources import generated_file, json_key


def test_atomic_write_leaves_no_temp_file_and_sets_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "d" / "f.json"
    fsio.atomic_write(target, "{}\n", 0o600)
    assert target.read_text() == "{}\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == ["f.json"]


def test_a_failed_rename_removes_its_temp_file_and_keeps_what_was_there(tmp_path: Path) -> None:
    target = tmp_path / "w" / "f.txt"
    target.mkdir(parents=True)
    (target / "inside").write_text("old")
    with pytest.raises(AgentError, match="cannot write"):
        fsio.atomic_write(target, "new")
    assert (target / "inside").read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def _leftover(directory: Path, name: str, random: str = "abcd_123", age_s: float = 0.0) -> Path:
    path = directory / f".{name}.{random}.tmp"
    path.write_text("half")
    if age_s:
        old = time.time() - age_s
        os.utime(path, (old, old))
    return path


def test_sweep_removes_only_the_writers_own_temp_names(tmp_path: Path) -> None:
    ours = _leftover(tmp_path, "settings.json")
    other_target = _leftover(tmp_path, "other.json")
    look_alikes = [tmp_path / ".settings.json.tmp", tmp_path / ".settings.json.ABCDEFGH.tmp",
                   tmp_path / "settings.json.abcdefgh.tmp", tmp_path / ".settings.json.abcdefg.tmp"]
    for path in look_alikes:
        path.write_text("user's")
    linked = tmp_path / ".settings.json.zzzzzzzz.tmp"
    linked.symlink_to(tmp_path / "elsewhere")
    directory = tmp_path / ".settings.json.dddddddd.tmp"
    directory.mkdir()
    assert fsio.sweep_temps(tmp_path, "settings\\.json") == [ours]
    assert not ours.exists() and other_target.exists() and linked.is_symlink() and directory.is_dir()
    assert all(p.read_text() == "user's" for p in look_alikes)


def test_sweep_with_an_age_keeps_recent_temp_files(tmp_path: Path) -> None:
    fresh = _leftover(tmp_path, "last-run.json", "aaaaaaaa")
    stale = _leftover(tmp_path, "last-run.json", "bbbbbbbb", age_s=3600)
    assert fsio.sweep_temps(tmp_path, "last-run\\.json", min_age_s=600) == [stale]
    assert fresh.exists()


def test_sweep_of_a_missing_directory_is_nothing(tmp_path: Path) -> None:
    assert fsio.sweep_temps(tmp_path / "nope", "x") == []


def test_sweep_interrupted_covers_every_managed_file_changed_or_not(tmp_path: Path) -> None:
    done = tmp_path / "a" / "done.md"
    done.parent.mkdir()
    done.write_text("same\n")
    todo = tmp_path / "b" / "todo.md"
    todo.parent.mkdir()
    leftovers = [_leftover(done.parent, "done.md"), _leftover(todo.parent, "todo.md")]
    plan = build_plan([generated_file("a", done, "same\n"), generated_file("b", todo, "new\n")])
    assert [f.path for f in plan.files] == [todo]
    assert sorted(sweep_interrupted(plan)) == sorted(leftovers)


def test_a_read_only_user_file_is_left_alone_with_a_sentence(tmp_path: Path) -> None:
    settings = tmp_path / "settings.json"
    settings.write_text('{"a": 1}\n')
    settings.chmod(0o444)
    results = apply_plan(build_plan([json_key("k.b", settings, "b", True)]))
    assert results[0].state == "error"
    assert "is read-only (mode 0444), so the agent leaves it as it is" in (results[0].message or "")
    assert settings.read_text() == '{"a": 1}\n' and stat.S_IMODE(settings.stat().st_mode) == 0o444


def test_a_read_only_file_the_agent_owns_whole_is_still_put_back(tmp_path: Path) -> None:
    """Only the user's own files say "hands off" with a missing write bit; a generated one is ours."""
    prompt = tmp_path / "enforcement.md"
    prompt.write_text("tampered")
    prompt.chmod(0o444)
    results = apply_plan(build_plan([generated_file("p", prompt, "the prompt\n")]))
    assert results[0].state == "corrected" and prompt.read_text() == "the prompt\n"


def test_writable_by_owner_follows_the_owner_write_bit_as_root(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root rule is tested as root")
    path = tmp_path / "f"
    path.write_text("x")
    for mode, expected in ((0o644, True), (0o444, False), (0o200, True), (0o044, False)):
        path.chmod(mode)
        assert fsio.writable_by_owner(fsio.read_fact(path)) is expected, oct(mode)


def test_read_fact_reports_the_owner(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_text("x")
    fact = fsio.read_fact(path)
    assert fact.uid == os.geteuid() and not fact.foreign
    assert fsio.read_fact(tmp_path / "absent").uid is None
