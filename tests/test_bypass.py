"""bypass.provider-credentials: raw provider keys in start files and process environments are
reported by name and place, never by value; the workspace's own virtual key is not a bypass."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.workspace import (
    AS_NOBODY,
    NEW_KEY,
    Workspace,
    can_run_as_nobody,
    give_to_nobody,
    write,
)
from workspace_agent.clients import bypass
from workspace_agent.errors import AgentError

NAMES = bypass.load_policy({}).names
RAW = "sk-ant-api03-RAWprovider-Zz81Kq"  # a provider key: must never appear anywhere
RAW_GROQ = "gsk_RAWgroq7Lq2Vv9"


# -- start files, as tables ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"export ANTHROPIC_API_KEY={RAW}", ["ANTHROPIC_API_KEY"]),
        (f'export ANTHROPIC_API_KEY="{RAW}"  # mine', ["ANTHROPIC_API_KEY"]),
        (f"ANTHROPIC_API_KEY='{RAW}'", ["ANTHROPIC_API_KEY"]),
        (f"  declare -x GROQ_API_KEY={RAW_GROQ}", ["GROQ_API_KEY"]),
        (f"typeset -x MISTRAL_API_KEY={RAW}", ["MISTRAL_API_KEY"]),
        (f"readonly AWS_SECRET_ACCESS_KEY={RAW}", ["AWS_SECRET_ACCESS_KEY"]),
        (f"set -gx GEMINI_API_KEY {RAW}", ["GEMINI_API_KEY"]),
        (f"set --export --global OPENAI_API_KEY '{RAW}'", ["OPENAI_API_KEY"]),
        (f'export OPENAI_API_KEY="{RAW}', ["OPENAI_API_KEY"]),  # unbalanced quote: still a literal
        (f"export OPENAI_API_KEY={NEW_KEY}", []),  # the workspace's own virtual key
        (f"set -gx OPENAI_API_KEY {NEW_KEY}", []),
        ("export ANTHROPIC_API_KEY=$(cat ~/.secrets/anthropic)", []),  # built at run time: the process scan
        ('export ANTHROPIC_API_KEY="$MY_KEY"', []),
        ("export ANTHROPIC_API_KEY=`pass show anthropic`", []),
        ("export ANTHROPIC_API_KEY=", []),
        ('export ANTHROPIC_API_KEY=""', []),
        ("export ANTHROPIC_API_KEY", []),
        (f"# export ANTHROPIC_API_KEY={RAW}", []),
        (f"echo ANTHROPIC_API_KEY={RAW}", []),
        (f"export NOT_LISTED_KEY={RAW}", []),
        ("export ANTHROPIC_BASE_URL=http://litellm:4000", []),
    ],
)
def test_start_file_lines(line: str, expected: list[str]) -> None:
    assert [name for _n, name in bypass.rc_assignments(line + "\n", NAMES, NEW_KEY)] == expected


def test_line_numbers_and_the_old_platform_block_is_left_to_its_own_rule() -> None:
    text = (
        "# mine\n"
        f"export GROQ_API_KEY={RAW_GROQ}\n"
        "\n"
        "# AI Configuration (LiteLLM)\n"
        "export OPENAI_API_KEY=sk-an-old-virtual-key-000\n"
        "export OPENAI_API_BASE=http://litellm:4000/v1\n"
        f"export ANTHROPIC_API_KEY={RAW}\n"
    )
    from workspace_agent.clients.shell import legacy_lines

    assert bypass.rc_assignments(text, NAMES, NEW_KEY, legacy_lines(text)) == [(2, "GROQ_API_KEY"), (7, "ANTHROPIC_API_KEY")]


def test_no_key_yet_means_any_value_is_suspect() -> None:
    assert bypass.rc_assignments(f"export OPENAI_API_KEY={NEW_KEY}\n", NAMES, None) == [(1, "OPENAI_API_KEY")]


def test_env_findings_compare_with_the_virtual_key_only_in_memory() -> None:
    env = {"ANTHROPIC_API_KEY": RAW, "OPENAI_API_KEY": NEW_KEY, "GROQ_API_KEY": "", "PATH": "/bin"}
    assert bypass.env_findings(env, NAMES, NEW_KEY) == ["ANTHROPIC_API_KEY"]


def test_describe_shows_names_and_places_only() -> None:
    findings = [bypass.Finding("GROQ_API_KEY", f"pid {n} (bash)") for n in range(7)]
    findings.append(bypass.Finding("ANTHROPIC_API_KEY", "~/.bashrc:3"))
    assert bypass.describe(findings) == (
        "ANTHROPIC_API_KEY in ~/.bashrc:3; GROQ_API_KEY in pid 0 (bash), pid 1 (bash), pid 2 (bash), "
        "pid 3 (bash), pid 4 (bash) and 2 more"
    )


def test_policy_extends_and_trims_the_shipped_lists() -> None:
    policy = bypass.load_policy({"bypass": {"extra_names": ["ACME_LLM_KEY"], "ignore_names": ["AWS_ACCESS_KEY_ID"],
                                            "extra_files": [".config/acme/env.sh"]}})
    assert "ACME_LLM_KEY" in policy.names and "AWS_ACCESS_KEY_ID" not in policy.names
    assert "ANTHROPIC_API_KEY" in policy.names and policy.files[-1] == ".config/acme/env.sh"
    with pytest.raises(AgentError, match=r"\[bypass\].extra_names must be a list of strings"):
        bypass.load_policy({"bypass": {"extra_names": "ACME"}})
    with pytest.raises(AgentError, match="unknown key 'names' in \\[bypass\\]"):
        bypass.load_policy({"bypass": {"names": []}})


# -- processes ------------------------------------------------------------------------------------------


@pytest.fixture
def child_with_keys() -> Iterator[subprocess.Popen[bytes]]:
    """A process of an ordinary user (nobody when we are root) with one raw key and the virtual key."""
    if os.geteuid() == 0 and not can_run_as_nobody():
        pytest.skip("as root, needs setpriv to start a process of an ordinary user")
    prefix = AS_NOBODY if os.geteuid() == 0 else ()
    env = {"PATH": os.environ.get("PATH", ""), "ANTHROPIC_API_KEY": RAW, "OPENAI_API_KEY": NEW_KEY}
    child = subprocess.Popen([*prefix, sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    time.sleep(0.3)  # past setpriv's exec
    try:
        yield child
    finally:
        child.kill()
        child.wait()


def test_a_real_process_environment_is_read_by_pid(child_with_keys: subprocess.Popen[bytes]) -> None:
    """Only our own child is read (pids=...), so the test never looks at this machine's processes."""
    import psutil

    owner = psutil.Process(child_with_keys.pid).uids().real
    scan = bypass.scan_processes(NAMES, NEW_KEY, uid=owner, limit=10, pids=[child_with_keys.pid])
    assert list(scan.findings) == [bypass.Finding("ANTHROPIC_API_KEY", f"pid {child_with_keys.pid} (python3.11)")] or (
        [f.name for f in scan.findings] == ["ANTHROPIC_API_KEY"])
    assert scan.scanned == 1 and RAW not in repr(scan)
    other_user = bypass.scan_processes(NAMES, NEW_KEY, uid=owner + 1, limit=10, pids=[child_with_keys.pid])
    assert other_user.findings == () and other_user.scanned == 0, "other users' processes are not read"
    assert bypass.scan_processes(NAMES, NEW_KEY, uid=owner, limit=0, pids=[child_with_keys.pid]).truncated


def test_as_root_no_process_is_read() -> None:
    scan = bypass.scan_processes(NAMES, NEW_KEY, uid=0, limit=10, pids=[os.getpid()])
    assert scan.skipped == "running as root: process environments are not read" and scan.scanned == 0


def test_a_process_that_ended_is_skipped() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    scan = bypass.scan_processes(NAMES, NEW_KEY, uid=12345, limit=10, pids=[gone.pid])
    assert scan.findings == () and scan.unreadable == 0


# -- end to end, as the workspace user (not root) -------------------------------------------------------


NON_DUMPABLE = (
    "import ctypes, time; ctypes.CDLL(None).prctl(4, 0, 0, 0, 0)\n"  # PR_SET_DUMPABLE 0: environ unreadable
    "time.sleep(60)\n"
)


@pytest.fixture
def nobody_ws(tmp_path: Path) -> Iterator[tuple[Workspace, list[subprocess.Popen[bytes]]]]:
    if not can_run_as_nobody():
        pytest.skip("needs root and setpriv to run the agent and its processes as an unprivileged user")
    ws = Workspace.prepare(tmp_path / "ws", old_files=False)
    write(ws.home / ".bashrc", f"alias ll='ls -l'\nexport GROQ_API_KEY={RAW_GROQ}\nexport OPENAI_API_KEY={NEW_KEY}\n", 0o644)
    write(ws.home / ".config/fish/conf.d/mine.fish", f"set -gx GEMINI_API_KEY {RAW}\n", 0o644)
    give_to_nobody(ws.root)
    base = {"PATH": os.environ.get("PATH", ""), "HOME": str(ws.home)}
    children = [
        subprocess.Popen([*AS_NOBODY, sys.executable, "-c", "import time; time.sleep(60)"],
                         env={**base, "ANTHROPIC_API_KEY": RAW, "OPENAI_API_KEY": NEW_KEY}),
        subprocess.Popen([*AS_NOBODY, sys.executable, "-c", "import time; time.sleep(60)"], env=base),
        subprocess.Popen([*AS_NOBODY, sys.executable, "-c", NON_DUMPABLE], env={**base, "MISTRAL_API_KEY": RAW}),
    ]
    time.sleep(0.3)  # let them exec and (the last one) drop dumpability
    try:
        yield ws, children
    finally:
        for child in children:
            child.kill()
            child.wait()


def test_check_as_the_workspace_user_names_places_and_never_values(nobody_ws) -> None:
    ws, (with_keys, clean, hidden) = nobody_ws
    done = ws.run("check", "--json", prefix=AS_NOBODY)
    assert done.returncode == 2, done.stderr
    rule = {r["rule_id"]: r for r in json.loads(done.stdout)["rules"]}["bypass.provider-credentials"]
    assert rule["state"] == "drift" and "around the LiteLLM gateway" in rule["message"]
    before = rule["before"]
    assert f"ANTHROPIC_API_KEY in pid {with_keys.pid} (python" in before
    assert "GEMINI_API_KEY in ~/.config/fish/conf.d/mine.fish:1" in before
    assert "GROQ_API_KEY in ~/.bashrc:2" in before
    assert f"pid {clean.pid}" not in before and "OPENAI_API_KEY" not in before
    assert f"pid {hidden.pid}" not in before and "process(es) could not be read" in before
    everything = done.stdout + done.stderr + (ws.state_dir / "last-run.json").read_text()
    for value in (RAW, RAW_GROQ, RAW[:12], RAW[-4:] + '"'):
        assert value not in everything


def test_an_ordinary_user_sees_no_finding_when_there_is_none(tmp_path: Path) -> None:
    if not can_run_as_nobody():
        pytest.skip("needs root and setpriv")
    ws = Workspace.prepare(tmp_path / "ws", old_files=False)
    write(ws.home / ".bashrc", f"export OPENAI_API_KEY={NEW_KEY}\n", 0o644)
    give_to_nobody(ws.root)
    started = time.monotonic()
    done = ws.run("check", "--json", prefix=AS_NOBODY)
    elapsed = time.monotonic() - started
    rule = {r["rule_id"]: r for r in json.loads(done.stdout)["rules"]}["bypass.provider-credentials"]
    # Other tests may run processes as nobody at the same time: only ours are known to be clean.
    assert "~/.bashrc" not in (rule["before"] or "") and RAW not in done.stdout
    assert elapsed < 5


def test_as_root_the_rule_says_processes_were_not_read(home: Path, keyed_env: str, cli) -> None:
    if os.geteuid() != 0:
        pytest.skip("the root case is tested as root")
    (home / ".profile").write_text(f"export DEEPSEEK_API_KEY={RAW}\n")
    result = cli("check", "--json")
    rule = {r["rule_id"]: r for r in json.loads(result.out)["rules"]}["bypass.provider-credentials"]
    assert rule["before"] == "DEEPSEEK_API_KEY in ~/.profile:1 (running as root: process environments are not read)"
    assert RAW not in result.all



def test_diffs_hide_the_values_of_listed_assignments() -> None:
    diff = (
        "--- a/~/.bashrc\n+++ b/~/.bashrc\n@@ -1,3 +1,4 @@\n"
        f" export GROQ_API_KEY={RAW_GROQ}\n"
        f"-set -gx GEMINI_API_KEY '{RAW}'\r\n"
        " export EDITOR=vim\n"
        "+. ~/.config/workspace-agent/shell-env.sh\n"
        "+export ANTHROPIC_API_KEY=$(cat /run/key)\n"
    )
    assert bypass.hide_values(diff, NAMES) == (
        "--- a/~/.bashrc\n+++ b/~/.bashrc\n@@ -1,3 +1,4 @@\n"
        " export GROQ_API_KEY=(hidden)\n"
        "-set -gx GEMINI_API_KEY (hidden)\r\n"
        " export EDITOR=vim\n"
        "+. ~/.config/workspace-agent/shell-env.sh\n"
        "+export ANTHROPIC_API_KEY=(hidden)\n"
    )


def test_plan_and_check_never_print_a_raw_key_from_a_start_file(home: Path, keyed_env: str, cli) -> None:
    (home / ".bashrc").write_text(f"export EDITOR=vim\nexport GROQ_API_KEY={RAW_GROQ}\n")
    outputs = [cli("plan"), cli("check", "--json"), cli("bootstrap", "--dry-run", "--json")]
    assert all("GROQ_API_KEY" in r.all for r in outputs), "the diff and the rule still name it"
    assert all(RAW_GROQ not in r.all for r in outputs)
