"""The terminal environment: pure rc-file transforms as tables, then real shells with a temp HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TEST_KEY
from tests.heavy import missing
from workspace_agent.clients import shell
from workspace_agent.paths import Paths

LINE = "if [ -r /h/.config/workspace-agent/shell-env.sh ]; then . /h/.config/workspace-agent/shell-env.sh; fi  " + shell.MARK

LEGACY_BLOCK = f"""# AI Configuration (LiteLLM)
export PATH="/home/coder/.opencode/bin:$PATH"
export AI_GATEWAY_URL="http://litellm:4000"
export OPENAI_API_BASE="http://litellm:4000/v1"
export OPENAI_API_KEY="{TEST_KEY}"
export AI_MODEL="claude-sonnet-4-5"
alias ai-models="echo 'Agent: all, Model: claude-sonnet-4-5, Gateway: litellm:4000'"
alias ai-usage="curl -s http://litellm:4000/user/info -H 'Authorization: Bearer {TEST_KEY}' | python3 -m json.tool"
"""
# What the platform appended after it at the same start (no key in these: they must stay).
OTHER_APPENDED = """# Claude Code CLI (Ollama on host Mac — GPU-accelerated)
export ANTHROPIC_BASE_URL="http://host.docker.internal:11434"
export ANTHROPIC_AUTH_TOKEN="ollama"
# Ollama — Host Mac's Ollama server (GPU-accelerated)
export OLLAMA_HOST=http://host.docker.internal:11434
"""
SKEL = """# ~/.bashrc: executed by bash(1) for non-login shells.
case $- in
    *i*) ;;
      *) return;;
esac
HISTCONTROL=ignoreboth
alias ll='ls -alF'
"""


# --- pure transforms -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected", "blocks"),
    [
        ("", "", 0),
        (SKEL, SKEL, 0),
        (SKEL + LEGACY_BLOCK, SKEL, 1),
        (SKEL + (LEGACY_BLOCK + OTHER_APPENDED) * 3, SKEL + OTHER_APPENDED * 3, 3),
        (LEGACY_BLOCK.replace("\n", "\r\n") + "echo hi\r\n", "echo hi\r\n", 1),  # CRLF
        (SKEL + LEGACY_BLOCK.rstrip("\n"), SKEL, 1),  # block at the end, no final newline
        ("# AI Configuration (LiteLLM)\nexport FOO=1\n", "export FOO=1\n", 1),  # a user line after the header stays
        ("  # AI Configuration (LiteLLM) is what we had\n", "  # AI Configuration (LiteLLM) is what we had\n", 0),
    ],
    ids=["empty", "no-block", "one", "three-repetitions", "crlf", "no-final-newline", "header-then-user-line", "lookalike"],
)
def test_remove_legacy(text: str, expected: str, blocks: int) -> None:
    assert shell.remove_legacy(text) == (expected, blocks)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, LINE + "\n"),
        ("", LINE + "\n"),
        ("alias ll='ls -l'", "alias ll='ls -l'\n" + LINE + "\n"),  # no final newline: one is added first
        ("a\n" + LINE + "\nb\n", "a\n" + LINE + "\nb\n"),  # already there: unchanged, stays in place
        ("a\n" + LINE + "\nb\n" + LINE + "\n" + LINE + "\n", "a\n" + LINE + "\nb\n"),  # duplicates collapse
        ("a\nif [ -r /old ]; then . /old; fi  " + shell.MARK + "\nb\n", "a\n" + LINE + "\nb\n"),  # outdated: replaced
        ("a\r\nold  " + shell.MARK + "\r\n", "a\r\n" + LINE + "\r\n"),  # keeps the file's line ending
        ('eval "$(workspace-agent shell-init bash)"\n', 'eval "$(workspace-agent shell-init bash)"\n'),  # user-managed
        ('# eval "$(workspace-agent shell-init bash)"\n', '# eval "$(workspace-agent shell-init bash)"\n' + LINE + "\n"),
    ],
    ids=["absent", "empty", "no-final-newline", "present", "duplicates", "outdated", "crlf", "shell-init", "commented-out"],
)
def test_ensure_rc_line(text: str | None, expected: str) -> None:
    assert shell.ensure_rc_line(text, LINE) == expected


def test_shell_presence_follows_path_and_start_files(tmp_path: Path) -> None:
    empty_path = str(tmp_path / "no-bin")
    assert not shell.present("zsh", tmp_path / ".zshrc", path_env=empty_path)
    (tmp_path / ".zshrc").write_text("")
    assert shell.present("zsh", tmp_path / ".zshrc", path_env=empty_path)
    assert shell.present("bash", tmp_path / ".bashrc", path_env=os.environ["PATH"])


# --- real shells -----------------------------------------------------------------------------


def _shell_env(home: Path, argv: list[str], extra: dict[str, str] | None = None) -> dict[str, str]:
    """A new interactive shell with only HOME/PATH from outside (as a fresh terminal would)."""
    env = {"HOME": str(home), "PATH": "/usr/local/bin:/usr/bin:/bin", "TERM": "dumb", **(extra or {})}
    proc = subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=home, timeout=60, stdin=subprocess.DEVNULL, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return dict(line.split("=", 1) for line in proc.stdout.splitlines() if "=" in line)


SHELL_CMDS = {
    "bash": ["bash", "-i", "-c", "env"],
    "zsh": ["zsh", "-i", "-c", "env"],
    "fish": ["fish", "-i", "-c", "env"],
}


def _start_files(home: Path) -> dict[str, str]:
    names = [".bashrc", ".zshrc", ".profile", ".config/fish/conf.d/workspace-agent.fish", ".config/workspace-agent/shell-env.sh"]
    return {name: (home / name).read_text() for name in names if (home / name).exists()}


@pytest.mark.parametrize("name", ["bash", "zsh", "fish"])
def test_new_shell_has_the_gateway_and_key_but_no_start_file_holds_the_key(home: Path, keyed_env: str, cli, name: str) -> None:
    if shutil.which(name) is None:
        missing(name, "scripts/install-test-deps shells (or apt-get install zsh fish)")
    assert cli("bootstrap", "-q").code == 0
    env = _shell_env(home, SHELL_CMDS[name])
    assert env["OPENAI_API_KEY"] == keyed_env
    assert env["LITELLM_API_KEY"] == keyed_env
    assert env["OPENAI_API_BASE"] == env["OPENAI_BASE_URL"] == "http://litellm:4000/v1"
    assert env["AI_GATEWAY_URL"] == "http://litellm:4000"
    assert env["AI_MODEL"] == "claude-sonnet-4-5"
    files = _start_files(home)
    assert ".bashrc" in files and ".config/workspace-agent/shell-env.sh" in files
    for path, text in files.items():
        assert keyed_env not in text, f"the key is in {path}"
    assert (Paths.for_home(home).key_file.stat().st_mode & 0o777) == 0o600


def test_five_bootstraps_leave_one_line(home: Path, keyed_env: str, cli) -> None:
    (home / ".bashrc").write_text(SKEL)
    (home / ".zshrc").write_text("setopt autocd\n")  # zsh counts once its start file exists
    codes = [cli("bootstrap", "-q", "--detailed-exitcodes").code for _ in range(5)]
    assert codes == [2, 0, 0, 0, 0], "only the first run changes anything"
    assert (home / ".bashrc").read_text() == SKEL + shell.rc_line(_desired(home)) + "\n"
    assert (home / ".zshrc").read_text() == "setopt autocd\n" + shell.rc_line(_desired(home)) + "\n"
    assert cli("check", "-q").code == 0


def _desired(home: Path):
    from workspace_agent.config import load_config
    from workspace_agent.desired import build_desired

    return build_desired(load_config({}, os.environ, {}), {})


def test_old_plaintext_blocks_are_removed_and_reported(home: Path, keyed_env: str, cli) -> None:
    original = SKEL + (LEGACY_BLOCK + OTHER_APPENDED) * 3 + "export EDITOR=vim\n"
    (home / ".bashrc").write_text(original)
    plan = cli("plan", "--json")
    diff = json.loads(plan.out)["diff"]
    assert keyed_env not in diff and "sk-…bK" not in diff and "sk-…N4bK" in diff, "the diff shows the key masked"

    result = cli("bootstrap", "--json")
    assert result.code == 0
    rules = {r["rule_id"]: r for r in json.loads(result.out)["rules"]}
    legacy = rules["shell.legacy-plaintext-key"]
    assert (legacy["state"], legacy["before"], legacy["after"]) == (
        "corrected",
        "3 block(s) with the key in plain text",
        "none",
    )
    assert rules["shell.plaintext-key"]["state"] == "compliant"
    after = (home / ".bashrc").read_text()
    assert after == SKEL + OTHER_APPENDED * 3 + "export EDITOR=vim\n" + shell.rc_line(_desired(home)) + "\n"
    assert keyed_env not in after
    env = _shell_env(home, SHELL_CMDS["bash"])
    assert env["OPENAI_API_KEY"] == keyed_env and env["EDITOR"] == "vim" and env["OLLAMA_HOST"].endswith(":11434")


def test_key_written_by_hand_is_reported_not_edited(home: Path, keyed_env: str, cli) -> None:
    profile = f"export PATH=$HOME/bin:$PATH\nexport OPENAI_API_KEY={keyed_env}\n"
    (home / ".profile").write_text(profile)
    result = cli("bootstrap", "--json")
    rule = next(r for r in json.loads(result.out)["rules"] if r["rule_id"] == "shell.plaintext-key")
    assert rule["state"] == "drift" and "~/.profile:2" in rule["before"]
    assert keyed_env not in result.out
    assert (home / ".profile").read_text() == profile
    assert cli("check", "-q").code == 2


def test_linked_start_file_is_checked_not_written(home: Path, keyed_env: str, cli, tmp_path: Path) -> None:
    dotfiles = tmp_path / "dotfiles"
    dotfiles.mkdir()
    (dotfiles / "bashrc").write_text(SKEL)
    (home / ".bashrc").symlink_to(dotfiles / "bashrc")
    result = cli("bootstrap", "--json")
    assert result.code == 0
    rules = {r["rule_id"]: r for r in json.loads(result.out)["rules"]}
    assert rules["shell.rc.bash"]["state"] == "drift" and "shell-init" in rules["shell.rc.bash"]["after"]
    assert rules["shell.legacy-plaintext-key"]["state"] == "compliant"
    assert (dotfiles / "bashrc").read_text() == SKEL and (home / ".bashrc").is_symlink()

    (dotfiles / "bashrc").write_text(SKEL + 'eval "$(workspace-agent shell-init bash)"\n')
    rules = {r["rule_id"]: r for r in json.loads(cli("check", "--json").out)["rules"]}
    assert rules["shell.rc.bash"]["state"] == "compliant"


def test_assistant_none_only_removes_the_old_block(home: Path, keyed_env: str, cli, monkeypatch) -> None:
    monkeypatch.setenv("AI_ASSISTANT", "none")
    (home / ".bashrc").write_text(SKEL + LEGACY_BLOCK)
    result = cli("bootstrap", "--json")
    ids = [r["rule_id"] for r in json.loads(result.out)["rules"]]
    shell_and_client = [i for i in ids if not i.startswith(("vscode.", "extension.", "codeserver.", "coder.", "bypass."))]
    assert shell_and_client == ["shell.legacy-plaintext-key"], "lockdown rules stay; no client or env rules"
    assert (home / ".bashrc").read_text() == SKEL


@pytest.mark.slow
def test_shell_init_output_sets_the_same_environment(home: Path, keyed_env: str, cli, cli_proc) -> None:
    cli("bootstrap", "-q")
    (home / ".bashrc").unlink()
    for name in ("bash", "zsh"):
        if shutil.which(name) is None:
            continue
        script = cli_proc("shell-init", name).out
        assert keyed_env not in script
        env = _shell_env(home, [name, "-c", script + "\nenv"])
        assert env["OPENAI_API_KEY"] == keyed_env and env["AI_GATEWAY_URL"] == "http://litellm:4000"
    if shutil.which("fish"):
        script = cli_proc("shell-init", "fish").out
        env = _shell_env(home, ["fish", "--no-config", "-c", script + "\nenv"])
        assert env["LITELLM_API_KEY"] == keyed_env


def test_placeholder_key_file_exports_no_key(home: Path, cli) -> None:
    """Before the first key arrives the key file holds a placeholder: no bogus key in the shell."""
    paths = Paths.for_home(home)
    paths.key_file.parent.mkdir(parents=True)
    paths.key_file.write_text("(the virtual key bootstrap will get from the key provisioner)\n")
    paths.shell_env_file.write_text(shell.posix_script(_desired(home)))
    env = _shell_env(home, ["bash", "-c", f". {paths.shell_env_file}; env"])
    assert "OPENAI_API_KEY" not in env and env["AI_GATEWAY_URL"] == "http://litellm:4000"


# --- completion --------------------------------------------------------------------------------


@pytest.mark.slow
def test_completion_scripts_and_answers(cli_proc) -> None:
    for name, needle in (("bash", "complete -o nosort -F"), ("zsh", "#compdef workspace-agent"), ("fish", "complete --no-files")):
        out = cli_proc("completion", name)
        assert out.code == 0 and needle in out.out and "_WORKSPACE_AGENT_COMPLETE" in out.out
    answer = cli_proc(env={"_WORKSPACE_AGENT_COMPLETE": "bash_complete", "COMP_WORDS": "workspace-agent sh", "COMP_CWORD": "1"})
    assert answer.out.split() == ["plain,shell-init"]


def test_bootstrap_installs_bash_completion_that_bash_loads(home: Path, keyed_env: str, cli) -> None:
    cli("bootstrap", "-q")
    completion = Paths.for_home(home).bash_completion_file
    proc = subprocess.run(
        ["bash", "--norc", "-c", f". {completion}; complete -p workspace-agent"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0 and "workspace-agent" in proc.stdout
