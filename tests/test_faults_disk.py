"""A full disk, a file size limit and a read-only home: no file is ever half-written, no temp file
stays behind, the error says what to do, and the next run (with space again) converges.

The full disk is a real tmpfs of a few pages mounted by the test (root only, else skipped); the
file size limit is RLIMIT_FSIZE set in the child (works anywhere); the read-only home is the
tmpfs remounted read-only or a read-only bind mount, and, as an ordinary user, directories
without write permission.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.workspace import (
    AS_NOBODY,
    STATE,
    Snapshot,
    lockdown_phase,
    Workspace,
    can_run_as_nobody,
    clone,
    give_to_nobody,
    old_or_new,
    snapshot,
    temp_files,
)

# Left out of `scripts/test --fast`: each test runs the agent as a process against a damaged disk.
pytestmark = pytest.mark.slow

PAGE = 4096
SETTINGS = "home/.local/share/code-server/User/settings.json"
SKIP_STATE = (f"home/{STATE}",)


@contextlib.contextmanager
def mounted(target: Path, *options: str) -> Iterator[Path]:
    """`mount ... target` for the block (root only; skips the test when the kernel says no)."""
    target.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a file system needs root")
    done = subprocess.run(["mount", *options, str(target)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here: {done.stderr.strip()}")
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


def tmpfs(target: Path, size: str = "2m") -> contextlib.AbstractContextManager[Path]:
    return mounted(target, "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs")


def fill(mount: Path, leave: int) -> None:
    """Use up the file system but `leave` bytes."""
    info = os.statvfs(mount)
    free = info.f_bavail * info.f_frsize
    with open(mount / "filler", "wb") as handle:
        handle.write(b"\0" * max(0, free - leave))
    info = os.statvfs(mount)
    assert info.f_bavail * info.f_frsize == leave


def reference(ws: Workspace, pristine: Path) -> tuple[Snapshot, Snapshot, Snapshot]:
    """(the tree before, the tree after an unconstrained bootstrap, the lockdown-phase versions of
    the settings files), then back to before."""
    ws.restore(pristine)
    before = snapshot(ws.root)
    done = ws.run("bootstrap", "-q")
    assert done.returncode == 0, done.stderr
    after = snapshot(ws.root)
    middle = lockdown_phase(ws, pristine)
    return before, after, middle


def failed(summary: dict) -> list[dict]:
    return [r for r in summary["rules"] if r["state"] == "error"]


def assert_whole_and_converges(ws: Workspace, before: Snapshot, after: Snapshot, middle: Snapshot) -> None:
    assert old_or_new(before, after, snapshot(ws.root), skip=SKIP_STATE, middle=middle) == []
    assert temp_files(ws.root) == []


@pytest.mark.parametrize("free_pages", [0, 1, 2, 4, 8])
def test_a_full_disk_leaves_every_file_old_or_new_and_says_so(tmp_path: Path, free_pages: int) -> None:
    with tmpfs(tmp_path / "mnt") as mnt:
        ws = Workspace.prepare(mnt / "ws")
        pristine = tmp_path / "pristine"
        clone(ws.root, pristine)
        before, after, middle = reference(ws, pristine)
        fill(mnt, free_pages * PAGE)
        done = ws.run("bootstrap", "--json", PYTHONDONTWRITEBYTECODE="1")
        assert "Traceback" not in done.stderr
        summary = json.loads(done.stdout)
        errors = failed(summary)
        assert done.returncode == (4 if errors else 0), done.stderr
        if free_pages == 0:
            assert errors and {r["rule_id"] for r in errors} >= {"key.file", "roo.import", "opencode.config"}
            assert any("could not record this run" in n for n in summary["notes"])
        for rule in errors:
            assert rule["message"].endswith("the disk is full; free some space and run again"), rule
        assert_whole_and_converges(ws, before, after, middle)
        (mnt / "filler").unlink()
        again = ws.run("bootstrap", "-q")
        assert again.returncode == 0, again.stderr
        assert snapshot(ws.root, skip=SKIP_STATE) == {k: v for k, v in after.items() if not k.startswith(SKIP_STATE)}


@pytest.mark.parametrize("limit", [0, 64, 1000])
def test_a_file_size_limit_leaves_every_file_old_or_new(tmp_path: Path, limit: int) -> None:
    ws = Workspace.prepare(tmp_path / "ws")
    pristine = tmp_path / "pristine"
    clone(ws.root, pristine)
    before, after, middle = reference(ws, pristine)

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = ws.run("bootstrap", "--json", preexec_fn=limited, PYTHONDONTWRITEBYTECODE="1")
    assert "Traceback" not in done.stderr and done.returncode == 4, done.stdout + done.stderr
    errors = failed(json.loads(done.stdout))
    assert errors and all("larger than this process may write (the file size limit" in r["message"] for r in errors)
    too_big = {rel for rel, (_mode, content) in after.items() if content is not None and len(content) > limit
               and before.get(rel) != after[rel] and not rel.startswith(SKIP_STATE)}
    assert {r["target"] for r in errors} == {str(ws.root / rel) for rel in too_big}
    assert_whole_and_converges(ws, before, after, middle)


@pytest.mark.parametrize("ran_before", [False, True])
def test_a_read_only_home_changes_nothing_and_says_why(tmp_path: Path, ran_before: bool) -> None:
    with tmpfs(tmp_path / "mnt") as mnt:
        ws = Workspace.prepare(mnt / "ws")
        if ran_before:
            assert ws.run("bootstrap", "-q").returncode == 0
            (ws.home / ".config/opencode/enforcement.md").write_text("tampered\n")
        unchanged = snapshot(ws.root)
        subprocess.run(["mount", "-o", "remount,ro", str(mnt)], check=True)
        done = ws.run("bootstrap", PYTHONDONTWRITEBYTECODE="1")
        assert done.returncode == 1 and "Traceback" not in done.stderr
        assert done.stderr.startswith("workspace-agent: cannot take the run lock: cannot write ")
        assert done.stderr.rstrip().endswith("/lock: the file system is read-only")
        assert snapshot(ws.root) == unchanged
        check = ws.run("check", "--json")  # a read-only home can still be checked
        assert check.returncode == 2, check.stderr  # the drift is there either way
        assert "could not record this run" in " ".join(json.loads(check.stdout)["notes"])


def test_a_read_only_settings_directory_is_one_error_among_applied_rules(tmp_path: Path) -> None:
    ws = Workspace.prepare(tmp_path / "ws")
    user_dir = ws.root / SETTINGS.rsplit("/", 1)[0]
    original = (ws.root / SETTINGS).read_bytes()
    with mounted(user_dir, "--bind", str(user_dir)):
        subprocess.run(["mount", "-o", "remount,bind,ro", str(user_dir)], check=True)
        done = ws.run("bootstrap", "--json")
        assert done.returncode == 4, done.stderr
        errors = failed(json.loads(done.stdout))
        assert [r["rule_id"] for r in errors] == ["roo.auto-import-path"] or all(
            r["target"].endswith(SETTINGS) for r in errors)
        assert all(r["message"].endswith("the file system is read-only") for r in errors)
        assert (ws.root / SETTINGS).read_bytes() == original
    assert (ws.home / ".config/roo-code/settings.json").exists()
    assert temp_files(ws.root) == []


# -- as an ordinary user: directories without write permission --------------------------------------


@pytest.fixture
def nobody_ws(tmp_path: Path) -> Workspace:
    if not can_run_as_nobody():
        pytest.skip("needs root and setpriv to run the agent as an unprivileged user")
    ws = Workspace.prepare(tmp_path / "ws")
    give_to_nobody(ws.root)
    return ws


def test_an_unwritable_home_as_an_ordinary_user(nobody_ws: Workspace) -> None:
    for path in [nobody_ws.home, *nobody_ws.home.rglob("*")]:
        if path.is_dir():
            path.chmod(0o555)
    unchanged = snapshot(nobody_ws.root)
    done = nobody_ws.run("bootstrap", prefix=AS_NOBODY)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "cannot take the run lock: cannot write" in done.stderr and "permission denied" in done.stderr
    assert snapshot(nobody_ws.root) == unchanged


def test_an_unwritable_settings_directory_as_an_ordinary_user(nobody_ws: Workspace) -> None:
    user_dir = nobody_ws.root / SETTINGS.rsplit("/", 1)[0]
    user_dir.chmod(0o555)
    original = (nobody_ws.root / SETTINGS).read_bytes()
    done = nobody_ws.run("bootstrap", "--json", prefix=AS_NOBODY)
    assert done.returncode == 4, done.stderr
    errors = failed(json.loads(done.stdout))
    assert errors and all(r["target"].endswith(SETTINGS) for r in errors)
    assert all(f"permission denied (check the owner and mode of {user_dir})" in r["message"] for r in errors), errors
    assert (nobody_ws.root / SETTINGS).read_bytes() == original
    assert temp_files(nobody_ws.root) == []
