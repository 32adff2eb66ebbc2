"""executables.which finds programs as shutil.which does for the agent's uses."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from workspace_agent.executables import which


def _program(folder: Path, name: str, mode: int = 0o755) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text("#!/bin/sh\n")
    path.chmod(mode)
    return path


def test_first_executable_on_the_path_wins_like_shutil(tmp_path: Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    _program(first, "tool", 0o644)  # not executable: skipped
    (first / "dir-tool").mkdir()  # a directory: skipped
    wanted = _program(second, "tool")
    _program(second, "dir-tool")
    search = os.pathsep.join([str(tmp_path / "missing"), str(first), str(second)])
    assert which("tool", search) == str(wanted) == shutil.which("tool", path=search)
    assert which("dir-tool", search) == shutil.which("dir-tool", path=search) == str(second / "dir-tool")
    assert which("nothing", search) is None and shutil.which("nothing", path=search) is None


def test_a_name_with_a_slash_is_taken_as_it_is(tmp_path: Path) -> None:
    tool = _program(tmp_path, "tool")
    assert which(str(tool), "") == str(tool)
    assert which(str(tmp_path / "absent"), "") is None


def test_default_search_is_the_environments_path(tmp_path: Path, monkeypatch) -> None:
    tool = _program(tmp_path / "bin", "only-here-tool")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert which("only-here-tool") == str(tool)
