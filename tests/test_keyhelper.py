"""`workspace-agent key`: masked by default, whole only into a pipe, never onto a terminal."""

from __future__ import annotations

import pytest

import os
import pty
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO, TEST_KEY
from workspace_agent.paths import Paths

# Left out of `scripts/test --fast`: each test runs the agent as a process.
pytestmark = pytest.mark.slow


def _store(home: Path, text: str = TEST_KEY + "\n", mode: int = 0o600) -> Path:
    key_file = Paths.for_home(home).key_file
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(text)
    key_file.chmod(mode)
    return key_file


def test_default_is_masked(home: Path, cli_proc) -> None:
    key_file = _store(home)
    result = cli_proc("key")
    assert result.code == 0
    assert result.out == f"sk-…N4bK (stored in {key_file})\n"
    assert TEST_KEY not in result.all


def test_print_into_a_pipe_gives_exactly_the_key(home: Path, cli_proc, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere.key"
    other.write_text("sk-other-key-0123456789\n")
    other.chmod(0o600)
    _store(home)
    assert cli_proc("key", "--print").out == TEST_KEY + "\n"
    assert cli_proc("key", "--print", "--file", str(other)).out == "sk-other-key-0123456789\n"


def test_print_refuses_a_terminal(home: Path) -> None:
    _store(home)
    parent, child = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "workspace_agent", "key", "--print"],
        stdin=subprocess.DEVNULL,
        stdout=child,
        stderr=child,
        cwd=REPO,
        env=dict(os.environ),
    )
    os.close(child)
    seen = b""
    while True:
        try:
            chunk = os.read(parent, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(parent)
    assert proc.wait(timeout=30) == 1
    text = seen.decode()
    assert "refusing to print the key to a terminal" in text
    assert TEST_KEY not in text


def test_missing_and_placeholder_files_are_sentences(home: Path, cli_proc) -> None:
    missing = cli_proc("key", "--print")
    assert missing.code == 1 and "run `workspace-agent bootstrap` first" in missing.err and missing.out == ""
    _store(home, "(the virtual key bootstrap will get from the key provisioner)\n")
    placeholder = cli_proc("key", "--print")
    assert placeholder.code == 1 and "holds no usable key yet" in placeholder.err and placeholder.out == ""
    assert "Traceback" not in missing.err + placeholder.err


def test_readable_by_others_warns_but_still_serves(home: Path, cli_proc) -> None:
    _store(home, mode=0o644)
    result = cli_proc("key", "--print")
    assert result.code == 0 and result.out == TEST_KEY + "\n"
    assert "readable by others (mode 0644)" in result.err and TEST_KEY not in result.err
