"""The click-free path of check / plan / bootstrap (commands.py): the forms it parses, what it
leaves to click, and that it answers exactly as the click commands do without importing click."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from workspace_agent.commands import parse
from workspace_agent.entry import main as entry_main


@pytest.mark.parametrize(
    ("command", "args", "expected"),
    [
        ("check", [], {"as_json": False, "quiet": False, "no_diff": False, "send_report": False}),
        ("check", ["-q", "--json", "--no-diff"], {"as_json": True, "quiet": True, "no_diff": True, "send_report": False}),
        ("check", ["--home", "/h", "--enforcement-level=design-first", "--policy", "/p.toml"],
         {"as_json": False, "quiet": False, "no_diff": False, "send_report": False, "home": "/h",
          "enforcement_level": "design-first", "policy_file": "/p.toml"}),
        ("bootstrap", ["--wait", "5", "--detailed-exitcodes", "--report"],
         {"as_json": False, "quiet": False, "dry_run": False, "detailed_exitcodes": True, "send_report": True, "wait": 5.0}),
        ("plan", ["--quiet", "--home", "/a", "--home", "/b"], {"as_json": False, "quiet": True, "home": "/b"}),
    ],
)
def test_the_usual_forms_are_parsed(command: str, args: list[str], expected: dict[str, object]) -> None:
    assert parse(command, args) == expected


@pytest.mark.parametrize(
    ("command", "args"),
    [
        ("check", ["--help"]), ("check", ["-h"]), ("bootstrap", ["--demo"]), ("check", ["--dry-run"]),
        ("check", ["--home"]), ("check", ["--home", "--json"]), ("bootstrap", ["--wait", "soon"]),
        ("check", ["extra"]), ("check", ["-qj"]), ("check", ["--json=yes"]), ("plan", ["--no-diff"]),
        ("check", ["--", "x"]),
    ],
)
def test_anything_else_is_left_to_click(command: str, args: list[str]) -> None:
    assert parse(command, args) is None


def test_the_fast_path_answers_as_the_click_command(home: Path, keyed_env: str, cli, capsys) -> None:
    assert cli("bootstrap", "-q").code == 0
    for args in (["check", "--no-diff"], ["plan"], ["bootstrap", "--detailed-exitcodes"], ["check", "--home", "relative"]):
        capsys.readouterr()
        code = entry_main(args)
        fast = capsys.readouterr()
        slow = cli(*args)
        def timeless(text: str) -> str:
            return re.sub(r"\d+\.\d+ s\b", "T s", text)

        assert (code, timeless(fast.out), fast.err) == (slow.code, timeless(slow.out), slow.err), args


HEAVY = "print('HEAVY', sorted({m.split('.')[0] for m in sys.modules} & {'click', 'pydantic', 'httpx', 'tomlkit', 'json5', 'psutil'}))"


@pytest.mark.slow
def test_check_and_bootstrap_import_nothing_heavy(home: Path, keyed_env: str, cli) -> None:
    assert cli("bootstrap", "-q").code == 0
    program = "import sys; from workspace_agent.entry import main; rc = main(sys.argv[1:])\n" + HEAVY + "\nsys.exit(rc)"
    for args in (["check", "-q"], ["bootstrap", "-q"], ["check", "--help"]):
        proc = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, cwd=REPO,
                              check=False, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
        assert proc.returncode == 0, proc.stderr
        heavy = "HEAVY ['click']" if "--help" in args else "HEAVY []"
        assert proc.stdout.rstrip().endswith(heavy), (args, proc.stdout)


def test_every_flag_the_fast_parser_knows_is_a_flag_of_the_click_command() -> None:
    """The fast path must never accept what click would refuse (a renamed or removed option)."""
    from workspace_agent.cli import cli
    from workspace_agent.commands import _OWN

    for command, flags in _OWN.items():
        params = cli.commands[command].params  # type: ignore[attr-defined]
        known = {opt for p in params for opt in (*p.opts, *p.secondary_opts)}
        assert set(flags) <= known, (command, set(flags) - known)
        takes_value = {opt for p in params if not getattr(p, "is_flag", False) for opt in p.opts}
        assert {f for f, (_name, takes) in flags.items() if takes} <= takes_value
        names = {p.name for p in params}
        assert {name for name, _takes in flags.values()} <= names
