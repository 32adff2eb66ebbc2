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
    assert fsio.sweep_temps(tmp_path, {"settings.json"}) == [ours]
    assert not ours.exists() and other_target.exists() and linked.is_symlink() and directory.is_dir()
    assert all(p.read_text() == "user's" for p in look_alikes)


def test_sweep_with_an_age_keeps_recent_temp_files(tmp_path: Path) -> None:
    fresh = _leftover(tmp_path, "last-run.json", "aaaaaaaa")
    stale = _leftover(tmp_path, "last-run.json", "bbbbbbbb", age_s=3600)
    assert fsio.sweep_temps(tmp_path, {"last-run.json"}, min_age_s=600) == [stale]
    assert fresh.exists()


def test_sweep_of_a_missing_directory_is_nothing(tmp_path: Path) -> None:
    assert fsio.sweep_temps(tmp_path / "nope", {"x"}) == []


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


# --- walking below the home without links (privilege.confine sets the home) --------------------


@pytest.fixture
def confined(tmp_path: Path):
    """A home the process works on: walks below it never follow a link."""
    from workspace_agent import privilege

    home = tmp_path / "confined-home"
    home.mkdir()
    privilege.confine(home)
    yield home
    privilege.release()


def test_a_linked_parent_directory_is_refused_for_reading_and_writing(confined: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "settings.json").write_text('{"mine": 1}\n')
    (confined / ".config").symlink_to(outside)
    target = confined / ".config" / "settings.json"
    with pytest.raises(AgentError, match=r"\.config is a symbolic link; the agent does not follow links inside the home"):
        fsio.read_fact(target)
    with pytest.raises(AgentError, match="symbolic link"):
        fsio.atomic_write(target, "{}\n")
    with pytest.raises(AgentError, match="symbolic link"):
        fsio.atomic_write(confined / ".config" / "new" / "f", "x")
    assert sorted(p.name for p in outside.iterdir()) == ["settings.json"]
    assert (outside / "settings.json").read_text() == '{"mine": 1}\n'


def test_directories_are_created_below_the_home_step_by_step(confined: Path) -> None:
    fsio.atomic_write(confined / "a" / "b" / "c.txt", "x\n", 0o600)
    assert (confined / "a" / "b" / "c.txt").read_text() == "x\n"
    assert stat.S_IMODE((confined / "a" / "b" / "c.txt").stat().st_mode) == 0o600


def test_a_fifo_is_refused_at_once_never_waited_on(confined: Path) -> None:
    fifo = confined / ".profile"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(AgentError, match=r"\.profile is a FIFO \(named pipe\), not a regular file"):
        fsio.read_fact(fifo)
    with pytest.raises(AgentError, match="FIFO"):
        fsio.read_linked(fifo, 1024)
    assert time.monotonic() - started < 1.0


def test_a_link_to_a_device_is_refused_and_never_read(confined: Path) -> None:
    (confined / ".bashrc").symlink_to("/dev/zero")
    with pytest.raises(AgentError, match="symbolic link"):
        fsio.read_fact(confined / ".bashrc")
    with pytest.raises(AgentError, match=r"leads to a device, not a regular file"):
        fsio.read_linked(confined / ".bashrc", 1024)


def test_read_linked_follows_a_dotfiles_link_but_caps_the_bytes(confined: Path, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "bashrc").write_text("export A=1\n" * 10)
    (confined / ".bashrc").symlink_to(dotfiles / "bashrc")
    assert fsio.read_linked(confined / ".bashrc", 1024) == "export A=1\n" * 10
    assert fsio.read_linked(confined / ".bashrc", 11, truncate=True) == "export A=1\n"
    with pytest.raises(AgentError, match="larger than"):
        fsio.read_linked(confined / ".bashrc", 11)
    assert fsio.read_linked(confined / ".zshrc", 1024) is None


def test_the_lock_file_is_never_opened_through_a_link(confined: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock_path = confined / ".local" / "state" / "workspace-agent" / "lock"
    lock_path.parent.mkdir(parents=True)
    lock_path.symlink_to(victim)
    with pytest.raises(AgentError, match="lock is a symbolic link"):
        fsio.open_lock(lock_path)
    lock_path.unlink()
    lock_path.symlink_to(tmp_path / "dangling")
    with pytest.raises(AgentError, match="symbolic link"):
        fsio.open_lock(lock_path)
    assert victim.read_text() == "precious\n" and not (tmp_path / "dangling").exists()


def test_a_hard_linked_lock_file_is_refused(confined: Path, tmp_path: Path) -> None:
    other = confined / "other"
    other.write_text("someone's\n")
    lock_path = confined / "lock"
    os.link(other, lock_path)
    with pytest.raises(AgentError, match="has 2 hard links"):
        fsio.open_lock(lock_path)
    assert other.read_text() == "someone's\n"


def test_remove_tree_never_leaves_a_linked_parent(confined: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside" / "github.copilot-1.0.0"
    outside.mkdir(parents=True)
    (confined / "extensions").symlink_to(outside.parent)
    with pytest.raises(AgentError, match="symbolic link"):
        fsio.remove_tree(confined / "extensions" / "github.copilot-1.0.0")
    assert outside.is_dir()


def test_an_oversized_file_is_refused_with_its_size(confined: Path) -> None:
    big = confined / "big.json"
    big.write_text("x" * 100)
    with pytest.raises(AgentError, match="is 100 bytes, more than the 50 bytes the agent edits"):
        fsio.read_fact(big, max_bytes=50)


def test_a_planted_lock_link_falls_back_to_locking_the_home(confined: Path, tmp_path: Path) -> None:
    from workspace_agent import lock

    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    lock_path = confined / ".local" / "state" / "workspace-agent" / "lock"
    lock_path.parent.mkdir(parents=True)
    lock_path.symlink_to(victim)
    with lock.exclusive(lock_path, 0):
        with pytest.raises(AgentError, match="another workspace-agent run still holds"):
            with lock.exclusive(lock_path, 0):
                pass  # pragma: no cover - the second lock must not be taken
    assert victim.read_text() == "precious\n" and lock_path.is_symlink()


def test_a_file_where_a_directory_belongs_is_named(confined: Path) -> None:
    (confined / ".config").write_text("not a directory\n")
    with pytest.raises(AgentError, match=r"\.config is a file, not a directory"):
        fsio.atomic_write(confined / ".config" / "opencode" / "opencode.json", "{}\n")
    assert (confined / ".config").read_text() == "not a directory\n"


@pytest.mark.parametrize(("name", "target"), [
    (".settings.json.ab12cd_9.tmp", "settings.json"),
    (".a.b.c.00000000.tmp", "a.b.c"),
    (".settings.json.ABCDEFGH.tmp", None),  # not a name atomic_write makes
    (".settings.json.abc.tmp", None),
    ("settings.json.abcdefgh.tmp", None),
    (".settings.json.abcdefgh", None),
    ("..abcdefgh.tmp", None),
])
def test_temp_target_reads_only_atomic_writes_names(name: str, target: str | None) -> None:
    assert fsio.temp_target(name) == target


def test_atomic_write_temp_names_are_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A temp file of this release's atomic_write is one the sweep would remove."""
    seen: list[str] = []
    real_replace = os.replace

    def spy(src, dst, **kwargs):  # record the temp name on its way to the target
        seen.append(src)
        return real_replace(src, dst, **kwargs)

    monkeypatch.setattr(os, "replace", spy)
    fsio.atomic_write(tmp_path / "f.json", "{}\n")
    monkeypatch.undo()
    assert len(seen) == 1 and fsio.temp_target(seen[0]) == "f.json"


def test_read_below_reads_each_file_as_read_fact_does(confined: Path, tmp_path: Path) -> None:
    """One walk to the directory, then each folder/name link-free: the same facts read_fact gives,
    a missing one absent, a planted FIFO or linked folder an error in its place (not for all)."""
    base = confined / "extensions"
    (base / "a").mkdir(parents=True)
    (base / "a" / "package.json").write_text('{"name": "a"}')
    (base / "b").mkdir()
    (base / "fifo").mkdir()
    os.mkfifo(base / "fifo" / "package.json")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "package.json").write_text("outside")
    (base / "linked").symlink_to(tmp_path / "elsewhere")
    wanted = [("a", "package.json"), ("b", "package.json"), ("fifo", "package.json"), ("linked", "package.json"),
              ("gone", "package.json")]
    got = fsio.read_below(base, wanted)
    assert got[0] == fsio.read_fact(base / "a" / "package.json") and got[0].text == '{"name": "a"}'
    assert got[1].text is None and got[4].text is None
    assert isinstance(got[2], AgentError) and "FIFO" in got[2].message
    assert isinstance(got[3], AgentError) and "symbolic link" in got[3].message
    assert all(not isinstance(fact, AgentError) and "outside" != fact.text for fact in (got[0], got[1], got[4]))
    assert [f.text for f in fsio.read_below(confined / "absent", [("a", "b")])] == [None]
