"""`workspace-agent watch` as a real process on real files: a flipped locked key comes back with the
user's comments and keys kept, through in-place writes, rename-replacement, deletion of the file
and of its directory, and bursts; keys it does not own are never written; one watcher at a time;
the bootstrap lock is respected; SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from workspace_agent import inotify, jsonc, lock
from workspace_agent.paths import Paths
from workspace_agent.watch import Watched, sort_events, watch_dir_for

# Left out of `scripts/test --fast`: each test runs a real watcher and waits for its inotify round trips.
pytestmark = pytest.mark.slow

KEY = "chat.disableAIFeatures"
BOUND_S = 10.0  # how long a test waits for a correction before failing (not a performance claim)


# -- pure parts -----------------------------------------------------------------------------------


def test_parse_splits_events_and_strips_the_name_padding() -> None:
    one = struct.pack("iIII", 1, inotify.IN_CLOSE_WRITE, 0, 16) + b"settings.json\0\0\0"
    two = struct.pack("iIII", 2, inotify.IN_DELETE_SELF, 0, 0)
    events = list(inotify.parse(one + two))
    assert events == [inotify.Event(1, inotify.IN_CLOSE_WRITE, "settings.json"), inotify.Event(2, inotify.IN_DELETE_SELF, "")]


def test_sort_events_picks_the_watched_files_and_asks_to_rearm_for_directories(tmp_path: Path) -> None:
    user = tmp_path / "cs" / "User" / "settings.json"
    machine = tmp_path / "cs" / "Machine" / "settings.json"
    watched = Watched(frozenset({user, machine}), {1: user.parent, 2: tmp_path / "cs"})
    ev = inotify.Event
    table: list[tuple[list[inotify.Event], set[Path], bool]] = [
        ([ev(1, inotify.IN_CLOSE_WRITE, "settings.json")], {user}, False),
        ([ev(1, inotify.IN_MOVED_TO, "settings.json")], {user}, False),
        ([ev(1, inotify.IN_CLOSE_WRITE, "settings.json.tmp123")], set(), False),  # a temp file: not yet
        ([ev(1, inotify.IN_CLOSE_WRITE, "keybindings.json")], set(), False),
        ([ev(2, inotify.IN_CREATE | inotify.IN_ISDIR, "Machine")], {machine}, True),  # its directory came back
        ([ev(2, inotify.IN_CREATE | inotify.IN_ISDIR, "logs")], set(), False),
        ([ev(1, inotify.IN_DELETE_SELF, "")], {user}, True),
        ([ev(-1, inotify.IN_Q_OVERFLOW, "")], {user, machine}, True),
        ([ev(99, inotify.IN_CLOSE_WRITE, "settings.json")], set(), False),  # a watch we dropped
    ]
    for events, touched, rearm in table:
        assert sort_events(events, watched) == (touched, rearm), events


def test_a_missing_directory_is_watched_through_its_nearest_ancestor(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    assert watch_dir_for(tmp_path / "a" / "b" / "c" / "settings.json") == tmp_path / "a"
    assert watch_dir_for(tmp_path / "a" / "settings.json") == tmp_path / "a"


def test_inotify_sees_a_rename_into_a_watched_directory(tmp_path: Path) -> None:
    with inotify.Inotify() as notify:
        wd = notify.add_dir(tmp_path)
        assert wd is not None and notify.add_dir(tmp_path / "missing") is None
        (tmp_path / "x.tmp").write_text("{}")
        os.replace(tmp_path / "x.tmp", tmp_path / "settings.json")
        names = {(e.name, bool(e.mask & inotify.IN_MOVED_TO)) for e in notify.read()}
        assert ("settings.json", True) in names


# -- the real process ------------------------------------------------------------------------------


class Watcher:
    def __init__(self, home: Path, log: Path, proc: subprocess.Popen[bytes]) -> None:
        self.home, self.log, self.proc = home, log, proc
        self.paths = Paths.for_home(home)

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def corrections(self) -> list[str]:
        path = self.paths.state_dir / "watch.log"
        return path.read_text().splitlines() if path.exists() else []

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)


def start_watcher(home: Path, tmp_path: Path, name: str = "watch", *extra: str) -> Watcher:
    log = tmp_path / f"{name}.err"
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "workspace_agent", "watch", *extra], cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=err)
    watcher = Watcher(home, log, proc)
    wait_for(lambda: "watch: watching" in watcher.output or proc.poll() is not None)
    return watcher


def wait_for(condition: Callable[[], bool], bound: float = BOUND_S) -> float:
    """Seconds until `condition` held; fails after `bound`."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < bound, "condition not reached in time"
        time.sleep(0.01)
    return time.monotonic() - started


def value(path: Path, key: str = KEY) -> object:
    try:
        return jsonc.loads(path.read_text()).get(key, "(unset)")
    except (OSError, jsonc.JsoncError):
        return "(unreadable)"


@pytest.fixture
def watcher(home: Path, keyed_env: str, tmp_path: Path, cli: Callable[..., object]) -> Iterator[Watcher]:
    result = cli("bootstrap", "-q")
    assert getattr(result, "code") == 0, getattr(result, "all")
    w = start_watcher(home, tmp_path)
    assert w.proc.poll() is None, w.output
    yield w
    w.stop()


def test_a_flipped_key_is_put_back_with_the_users_comments_and_keys(watcher: Watcher) -> None:
    settings = watcher.paths.user_settings
    text = settings.read_text().replace(f'"{KEY}": true', f'"{KEY}": false')
    text = text.replace("{", '{\n  // my font\n  "editor.fontSize": 17,', 1)
    settings.write_text(text)  # in place, as the palette command's settings write does
    wait_for(lambda: value(settings) is True)
    after = settings.read_text()
    assert "// my font" in after and value(settings, "editor.fontSize") == 17
    wait_for(lambda: any(f"vscode.setting.{KEY}" in line for line in watcher.corrections()))
    line = next(line for line in watcher.corrections() if f"vscode.setting.{KEY}" in line)
    assert "restored" in line and "false → true" in line and "ms after the change" in line
    assert line in watcher.output  # and on stderr


def test_replacement_by_rename_deletion_and_a_recreated_directory(watcher: Watcher) -> None:
    settings = watcher.paths.user_settings
    temp = settings.with_name("settings.json.new")
    temp.write_text('{"editor.fontSize": 12}')
    os.replace(temp, settings)  # an editor's atomic save
    wait_for(lambda: value(settings) is True)
    assert value(settings, "editor.fontSize") == 12

    settings.unlink()
    wait_for(lambda: value(settings) is True)

    shutil.rmtree(settings.parent)
    wait_for(lambda: value(settings) is True)  # the directory came back with the file

    machine = watcher.paths.machine_settings
    shutil.rmtree(machine.parent, ignore_errors=True)
    machine.parent.mkdir(parents=True)
    machine.write_text(f'{{"{KEY}": false, "editor.tabSize": 3}}')
    wait_for(lambda: value(machine) is True)
    assert value(machine, "editor.tabSize") == 3
    assert watcher.proc.poll() is None


def test_a_burst_of_writes_is_debounced_and_ends_restored(watcher: Watcher) -> None:
    settings = watcher.paths.user_settings
    original = settings.read_text()
    flipped = original.replace(f'"{KEY}": true', f'"{KEY}": false')
    before = len(watcher.corrections())
    for n in range(200):
        settings.write_text(flipped if n % 2 == 0 else original)
    settings.write_text(flipped)
    wait_for(lambda: value(settings) is True)
    time.sleep(0.5)  # let any late fix land before counting
    fixes = [line for line in watcher.corrections()[before:] if f"vscode.setting.{KEY}" in line]
    assert 1 <= len(fixes) < 50, fixes
    assert value(settings) is True


def test_keys_it_does_not_own_are_never_written(watcher: Watcher) -> None:
    settings = watcher.paths.user_settings
    text = settings.read_text().replace("{", '{\n  "editor.fontSize": 21,', 1)
    settings.write_text(text)
    seen = settings.stat()
    # A flip in another watched file, fixed after the user's edit was seen: then nothing wrote here.
    machine = watcher.paths.machine_settings
    machine.parent.mkdir(parents=True, exist_ok=True)
    machine.write_text(f'{{"{KEY}": false}}')
    wait_for(lambda: value(machine) is True)
    now = settings.stat()
    assert (now.st_ino, now.st_mtime_ns) == (seen.st_ino, seen.st_mtime_ns)
    assert settings.read_text() == text
    assert not any("editor.fontSize" in line for line in watcher.corrections())


def test_it_waits_for_a_running_bootstrap(watcher: Watcher) -> None:
    settings = watcher.paths.user_settings
    with lock.exclusive(watcher.paths.lock_file, 5):
        settings.write_text(settings.read_text().replace(f'"{KEY}": true', f'"{KEY}": false'))
        time.sleep(1.0)
        assert value(settings) is False  # not written while bootstrap holds the run lock
    wait_for(lambda: value(settings) is True)


def test_one_watcher_per_user_and_a_clean_stop(watcher: Watcher, tmp_path: Path) -> None:
    second = start_watcher(watcher.home, tmp_path, "second")
    assert second.proc.wait(10) == 1
    assert "already running" in second.output and f"pid {watcher.proc.pid}" in second.output
    assert watcher.stop() == 0
    assert "stopped (SIGTERM)" in watcher.output and "Traceback" not in watcher.output
    third = start_watcher(watcher.home, tmp_path, "third")  # the lock went with the process
    assert third.proc.poll() is None, third.output
    assert third.stop() == 0


def test_a_broken_file_is_reported_once_and_left_alone(watcher: Watcher) -> None:
    settings = watcher.paths.user_settings
    broken = '{"editor.fontSize": 14, "chat.disableAIFeatures": false,,,'
    settings.write_text(broken)
    wait_for(lambda: any("NOT restored" in line for line in watcher.corrections()))
    settings.write_text(broken + " ")
    time.sleep(0.5)
    assert settings.read_text() == broken + " "  # the user's half-typed file is not overwritten
    assert sum("NOT restored" in line for line in watcher.corrections()) == 1
    settings.write_text(json.dumps({"editor.fontSize": 14, KEY: False}))
    wait_for(lambda: value(settings) is True)


@pytest.mark.parametrize("source", ["coder-template.tf", "workspace-start"])
def test_the_start_script_and_template_start_it_in_the_background(source: str) -> None:
    text = (REPO / "dockerfile" / source).read_text()
    lines = [line.strip() for line in text.splitlines() if line.strip().startswith("workspace-agent watch")]
    assert len(lines) == 1, lines
    assert lines[0].endswith("2>&1 &")  # detached, its output not holding the start script's pipes
    assert text.index("workspace-agent bootstrap") < text.index("workspace-agent watch")


@pytest.mark.parametrize("assistant", ["both", "all", "roo-code", "zoo-code", "opencode", "claude-code", "none"])
def test_owned_rules_are_exactly_the_owned_part_of_the_full_rule_list(
    home: Path, keyed_env: str, monkeypatch: pytest.MonkeyPatch, assistant: str
) -> None:
    from workspace_agent.config import load_config
    from workspace_agent.desired import build_desired, rules
    from workspace_agent.keysource import resolve_key
    from workspace_agent.watch import owned, owned_rules

    monkeypatch.setenv("AI_ASSISTANT", assistant)
    config = load_config({}, os.environ, {})
    paths = Paths.for_home(home)
    desired = build_desired(config, {}, paths)
    key = resolve_key(config, paths, network=False)
    full = [(r.rule_id, getattr(r, "path", None)) for r in rules(desired, key) if owned(r)]
    mine = [(r.rule_id, r.path) for r in owned_rules(desired, key)]
    assert mine == full and any(rule_id.startswith("vscode.setting.") for rule_id, _ in mine)


def test_a_planted_link_or_fifo_is_refused_not_followed(watcher: Watcher, tmp_path: Path) -> None:
    settings = watcher.paths.user_settings
    victim = tmp_path / "victim.json"
    victim.write_text('{"precious": 1}')
    settings.unlink()
    settings.symlink_to(victim)
    wait_for(lambda: any("symbolic link" in line for line in watcher.corrections()))
    assert victim.read_text() == '{"precious": 1}' and settings.is_symlink()
    settings.unlink()
    os.mkfifo(settings)  # opening it would block a reader forever
    wait_for(lambda: any("not a regular file" in line for line in watcher.corrections()))
    settings.unlink()
    wait_for(lambda: value(settings) is True)  # and it keeps working
    assert watcher.proc.poll() is None


def test_a_file_saved_empty_then_written_is_not_taken_for_empty(watcher: Watcher) -> None:
    """A save in two steps (empty, then the text 80 ms later, as a slow in-place save looks from
    outside): the watcher waits for the text instead of calling every locked key unset."""
    settings = watcher.paths.user_settings
    text = settings.read_text().replace(f'"{KEY}": true', f'"{KEY}": false').replace("{", '{\n  "mine": 5,', 1)
    before = len(watcher.corrections())
    settings.write_text("")
    time.sleep(0.08)
    settings.write_text(text)
    wait_for(lambda: value(settings) is True)
    time.sleep(0.5)
    lines = watcher.corrections()[before:]
    assert value(settings, "mine") == 5
    assert [line for line in lines if "(unset)" in line] == [], lines
    assert any(f"vscode.setting.{KEY}" in line and "false → true" in line for line in lines), lines
