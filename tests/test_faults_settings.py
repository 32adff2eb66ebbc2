"""A user settings.json the agent cannot or must not edit: one clear sentence on the rules that
live in it, the file untouched (bytes, mode, kind), everything else applied, exit code "partial"
(4 plain, 6 with --detailed-exitcodes since other files changed)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.faults.workspace import (
    AS_NOBODY,
    NEW_KEY,
    USER_SETTINGS,
    Workspace,
    can_run_as_nobody,
    clone,
    give_to_nobody,
)

# Left out of `scripts/test --fast`: each test runs the agent as a process over damaged settings.
pytestmark = pytest.mark.slow

SETTINGS = "home/.local/share/code-server/User/settings.json"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.prepare(tmp_path / "ws")


def settings_path(ws: Workspace) -> Path:
    return ws.root / SETTINGS


def fingerprint(path: Path) -> tuple[int, int, bytes | None, str | None]:
    """(kind+mode, owner, bytes of a file, target of a link): everything "untouched" means."""
    info = path.lstat()
    content = path.read_bytes() if stat.S_ISREG(info.st_mode) else None
    target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    return info.st_mode, info.st_uid, content, target


def bootstrap_both_ways(ws: Workspace, prefix: tuple[str, ...] = ()) -> dict:
    """Plain bootstrap must exit 4; then --detailed-exitcodes on a fresh copy exits 6. The summary
    of the plain run is returned."""
    pristine = ws.root.parent / "pristine"
    clone(ws.root, pristine)
    detailed = ws.run("bootstrap", "--json", "--detailed-exitcodes", prefix=prefix)
    assert detailed.returncode == 6, detailed.stdout + detailed.stderr
    ws.restore(pristine)
    plain = ws.run("bootstrap", "--json", prefix=prefix)
    assert plain.returncode == 4, plain.stdout + plain.stderr
    assert "Traceback" not in plain.stderr
    return json.loads(plain.stdout)


def assert_only_settings_rules_failed(summary: dict, ws: Workspace, phrase: str) -> None:
    target = str(settings_path(ws))
    by_state: dict[str, list[dict]] = {}
    for rule in summary["rules"]:
        by_state.setdefault(rule["state"], []).append(rule)
    errors = by_state.get("error", [])
    assert errors and all(r["target"] == target for r in errors), errors
    assert all(phrase in (r["message"] or "") for r in errors), [r["message"] for r in errors]
    others = [r for r in summary["rules"] if r["target"] != target]
    assert others and all(r["state"] in ("corrected", "compliant") for r in others), others
    home = ws.home
    assert (home / ".config/workspace-agent/litellm.key").read_text() == NEW_KEY + "\n"
    roo = json.loads((home / ".config/roo-code/settings.json").read_text())
    assert roo["providerProfiles"]["apiConfigs"]["litellm"]["openAiApiKey"] == NEW_KEY
    assert json.loads((home / ".config/opencode/opencode.json").read_text())["enabled_providers"] == ["litellm"]


CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "not valid JSONC": (lambda p: p.write_text('{\n  "editor.fontSize": 14,\n  "broken": tru\n}\n'),
                        "is not valid JSONC (invalid JSONC at line 3:"),
    "unterminated comment": (lambda p: p.write_text('{ /* never closed\n  "a": 1 }\n'), "is not valid JSONC"),
    "a JSON array": (lambda p: p.write_text("[1, 2]\n"), "is not valid JSONC"),
    "not UTF-8": (lambda p: p.write_bytes(b'{"name": "caf\xe9"}\n'), "is not UTF-8 text (byte 13); left untouched"),
    "a directory": (lambda p: (p.mkdir(), (p / "keep.json").write_text("{}")), "is a directory, not a file"),
    "a symlink": (lambda p: ((p.parent / "real.json").write_text(USER_SETTINGS), p.symlink_to("real.json")),
                  "is a symbolic link; the agent does not write through links"),
    "a dangling symlink": (lambda p: p.symlink_to("/nonexistent/settings.json"), "is a symbolic link"),
    "read-only (0444)": (lambda p: (p.write_text(USER_SETTINGS), p.chmod(0o444)),
                         "is read-only (mode 0444), so the agent leaves it as it is"),
    "read-only (0400)": (lambda p: (p.write_text(USER_SETTINGS), p.chmod(0o400)), "is read-only (mode 0400)"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_user_settings_are_left_untouched_and_the_rest_is_applied(ws: Workspace, case: str) -> None:
    path = settings_path(ws)
    path.unlink()
    make, phrase = CASES[case]
    make(path)
    before = {p: fingerprint(p) for p in [path, *path.parent.rglob("*")]}
    summary = bootstrap_both_ways(ws)
    assert {p: fingerprint(p) for p in [path, *path.parent.rglob("*")]} == before
    assert_only_settings_rules_failed(summary, ws, phrase)


def test_a_huge_settings_file_is_refused_quickly_and_untouched(ws: Workspace) -> None:
    path = settings_path(ws)
    big = '{\n  "editor.fontSize": 14,\n  "blob": "' + "x" * (10 * 1024 * 1024) + '"\n}\n'
    path.write_text(big)
    before = fingerprint(path)
    started = time.monotonic()
    summary = bootstrap_both_ways(ws)
    elapsed = time.monotonic() - started
    assert fingerprint(path) == before
    assert_only_settings_rules_failed(summary, ws, "is 10 MB, more than the 8 MB the agent edits; left untouched")
    assert elapsed < 10, f"two runs took {elapsed:.1f} s: the big file must not be read"


def test_an_empty_settings_file_counts_as_empty_settings_as_vs_code_does(ws: Workspace) -> None:
    """Deliberately not "untouched": VS Code reads an empty settings.json as {}, nothing the user
    had can be lost, and leaving it would leave the workspace without its lockdown keys."""
    path = settings_path(ws)
    path.write_text("")
    result = ws.run("bootstrap", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(path.read_text())
    assert data["roo-cline.autoImportSettingsPath"].endswith("/.config/roo-code/settings.json")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.fixture
def immutable(ws: Workspace) -> Iterator[Path]:
    path = settings_path(ws)
    if os.geteuid() != 0 or shutil.which("chattr") is None:
        pytest.skip("chattr +i needs root and chattr")
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False).returncode != 0:
        pytest.skip("this file system does not support the immutable attribute")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=False)


def test_an_immutable_settings_file_is_explained_and_untouched(ws: Workspace, immutable: Path) -> None:
    """Root may write a 0444 file but not an immutable one: the rename fails, the temp file goes."""
    before = fingerprint(immutable)
    plain = ws.run("bootstrap", "--json")
    assert plain.returncode == 4, plain.stdout + plain.stderr
    summary = json.loads(plain.stdout)
    again = ws.run("bootstrap", "--detailed-exitcodes")
    assert again.returncode == 4, "nothing else left to change; the settings still cannot be written"
    assert fingerprint(immutable) == before
    assert_only_settings_rules_failed(summary, ws, "operation not permitted (is it immutable or append-only?")
    assert sorted(p.name for p in immutable.parent.iterdir()) == ["settings.json"], "no temp file left behind"


# -- as an ordinary user (the agent runs as the workspace user, not root) ------------------------


@pytest.fixture
def nobody_ws(ws: Workspace) -> Workspace:
    if not can_run_as_nobody():
        pytest.skip("needs root and setpriv to run the agent as an unprivileged user")
    return ws


def test_read_only_settings_as_an_ordinary_user(nobody_ws: Workspace) -> None:
    path = settings_path(nobody_ws)
    give_to_nobody(nobody_ws.root)
    path.chmod(0o444)
    before = fingerprint(path)
    summary = bootstrap_both_ways(nobody_ws, prefix=AS_NOBODY)
    assert fingerprint(path) == before
    assert_only_settings_rules_failed(summary, nobody_ws, "is read-only (mode 0444)")


def test_settings_owned_by_someone_else_as_an_ordinary_user(nobody_ws: Workspace) -> None:
    """Writable directory, but the file is root's: replacing it would steal it; say so instead."""
    path = settings_path(nobody_ws)
    give_to_nobody(nobody_ws.root)
    os.chown(path, 0, 0)
    before = fingerprint(path)
    summary = bootstrap_both_ways(nobody_ws, prefix=AS_NOBODY)
    assert fingerprint(path) == before
    assert_only_settings_rules_failed(summary, nobody_ws, "belongs to another user (uid 0, mode 0644)")
