"""Terminal tools: the gateway environment in every new shell, without the key in any rc file.

The agent owns one POSIX file (`~/.config/workspace-agent/shell-env.sh`) that exports the gateway
variables and reads the key from its 0600 file when the shell starts; ~/.bashrc and ~/.zshrc get
one marked line that sources it, fish gets its own file in conf.d/. People who keep their
dotfiles elsewhere use `eval "$(workspace-agent shell-init bash)"` instead; a start file that
already does so, or that is a link into a dotfiles repository, is left alone and only checked.

Older platform versions appended a `# AI Configuration (LiteLLM)` block with the key in plain
text to ~/.bashrc at every start; `shell.legacy-plaintext-key` removes every copy of it and
nothing else.
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable
from functools import cache
from pathlib import Path

from workspace_agent import fsio
from workspace_agent.desired import Desired
from workspace_agent.digest import sha256_hex
from workspace_agent.errors import AgentError
from workspace_agent.executables import which
from workspace_agent.keysource import KeyResolution
from workspace_agent.plan import ActionFact, ActionRule, FileRule, Rule
from workspace_agent.resources import generated_file

MARK = "# workspace-agent: AI gateway environment"
SHELL_INIT = r"^[^#]*\bworkspace-agent\s+shell-init\b"  # compiled on first use (re keeps it): a compliant check never needs it
SHELLS = ("bash", "zsh", "fish")

LEGACY_HEADER = "# AI Configuration (LiteLLM)"
# The lines that block held (the key sat in OPENAI_API_KEY and inside the ai-usage alias).
_LEGACY_LINE = (  # compiled on first use, like SHELL_INIT
    r"^(?:export (?:PATH|AI_GATEWAY_URL|OPENAI_API_BASE|OPENAI_BASE_URL|OPENAI_API_KEY|LITELLM_API_KEY|AI_MODEL)="
    r"|alias (?:ai-models|ai-usage)=)"
)
# Start files a person may have put the key into by hand; checked, never edited.
PLAINTEXT_CANDIDATES = (".bashrc", ".bash_profile", ".profile", ".zshrc", ".zshenv", ".zprofile", ".config/fish/config.fish")


def variables(desired: Desired) -> dict[str, str]:
    """The non-secret variables every terminal tool gets (the key is added from its file)."""
    return {
        "AI_GATEWAY_URL": desired.config.gateway_url,
        "OPENAI_API_BASE": desired.gateway_v1,
        "OPENAI_BASE_URL": desired.gateway_v1,
        "AI_MODEL": desired.model.litellm,
    }


_HEADER = (
    "Written by workspace-agent; bootstrap rewrites it, so edits here are undone.\n"
    "It sets the AI gateway for terminal tools. The key is read from its 0600 file when the\n"
    "shell starts and is never written into this file or any start file."
)


def posix_script(desired: Desired) -> str:
    """For bash and zsh (sourced, or eval'd from `shell-init`): plain POSIX sh."""
    key_file = shlex.quote(str(desired.paths.key_file))
    lines = [f"# {line}".rstrip() for line in _HEADER.splitlines()]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in variables(desired).items()]
    lines += [
        f"if [ -r {key_file} ]; then",
        f"  IFS= read -r _wa_key < {key_file} || :",
        "  case $_wa_key in",
        "    ''|*[[:space:]]*|'('*) ;;  # empty, or the placeholder written before a key exists",
        "    *) export OPENAI_API_KEY=\"$_wa_key\" LITELLM_API_KEY=\"$_wa_key\" ;;",
        "  esac",
        "  unset _wa_key",
        "fi",
    ]
    return "\n".join(lines) + "\n"


def fish_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def fish_script(desired: Desired) -> str:
    """For fish (conf.d/ sources every *.fish file at start)."""
    key_file = fish_quote(str(desired.paths.key_file))
    lines = [f"# {line}".rstrip() for line in _HEADER.splitlines()]
    lines += [f"set -gx {name} {fish_quote(value)}" for name, value in variables(desired).items()]
    lines += [
        f"if test -r {key_file}",
        f"    read -l _wa_key < {key_file}",
        "    if string match -qr '^[^\\s(]+$' -- $_wa_key",
        "        set -gx OPENAI_API_KEY $_wa_key",
        "        set -gx LITELLM_API_KEY $_wa_key",
        "    end",
        "end",
    ]
    return "\n".join(lines) + "\n"


def snippet(desired: Desired, shell: str) -> str:
    """What `workspace-agent shell-init SHELL` prints."""
    if shell == "fish":
        return fish_script(desired)
    if shell in ("bash", "zsh"):
        return posix_script(desired)
    raise AgentError(f"unknown shell {shell!r}: choose one of {', '.join(SHELLS)}")


def rc_line(desired: Desired) -> str:
    env_file = shlex.quote(str(desired.paths.shell_env_file))
    return f"if [ -r {env_file} ]; then . {env_file}; fi  {MARK} (do not edit this line)"


# --- pure text transforms (str → str), tested as tables ---


def _body(line: str) -> str:
    return line.rstrip("\r\n")


def legacy_lines(text: str) -> set[int]:
    """Indexes (0-based) of the lines of every `# AI Configuration (LiteLLM)` block: the header
    and the lines the platform wrote under it."""
    lines = text.splitlines()
    inside: set[int] = set()
    i = 0
    while i < len(lines):
        if lines[i].rstrip() == LEGACY_HEADER:
            inside.add(i)
            i += 1
            while i < len(lines) and re.match(_LEGACY_LINE, lines[i]):
                inside.add(i)
                i += 1
            continue
        i += 1
    return inside


def remove_legacy(text: str) -> tuple[str, int]:
    """Drop every `# AI Configuration (LiteLLM)` block (the header and the lines the platform
    wrote under it); everything else stays byte-identical. Returns (text, blocks removed)."""
    lines = text.splitlines(keepends=True)
    inside = legacy_lines(text)
    blocks = sum(1 for i in inside if _body(lines[i]).rstrip() == LEGACY_HEADER)
    return "".join(line for i, line in enumerate(lines) if i not in inside), blocks


def ensure_rc_line(text: str | None, line: str) -> str | None:
    """Exactly one marked line that sources the env file (kept in place when present).

    A start file that runs `workspace-agent shell-init` itself is left as it is."""
    current = text or ""
    lines = current.splitlines(keepends=True)
    ours = [i for i, item in enumerate(lines) if MARK in item]
    if not ours and any(re.match(SHELL_INIT, _body(item)) for item in lines):
        return text
    if len(ours) == 1 and _body(lines[ours[0]]) == line:
        return text
    if ours:
        first = ours[0]
        ending = lines[first][len(_body(lines[first])):] or "\n"
        lines[first] = line + ending
        return "".join(item for i, item in enumerate(lines) if i == first or i not in ours)
    separator = "" if not current or current.endswith("\n") else "\n"
    return current + separator + line + "\n"


def _count_sourcing(text: str | None) -> str:
    if text is None:
        return "absent"
    lines = text.splitlines()
    ours = sum(1 for item in lines if MARK in item)
    if ours == 0 and any(re.match(SHELL_INIT, item) for item in lines):
        return "via shell-init"
    return {0: "not sourced", 1: "sourced"}.get(ours, f"sourced {ours} times")


def _count_legacy(text: str | None) -> str:
    blocks = remove_legacy(text)[1] if text else 0
    return f"{blocks} block(s) with the key in plain text" if blocks else "none"


# --- rules ---


def present(shell: str, marker: Path, path_env: str | None = None) -> bool:
    """A shell counts when it is installed or its start file/dir already exists."""
    found = which(shell, path=path_env if path_env is not None else os.environ.get("PATH"))
    return found is not None or marker.exists()


def _linked_rule(rule_id: str, path: Path, check: Callable[[str | None], str], good: set[str], want: str) -> ActionRule:
    """A start file that is a symbolic link belongs to a dotfiles tool: check it, never write."""

    def observe() -> ActionFact:
        try:  # as the home's owner, regular files only, capped: a link to /dev/zero or a FIFO is refused
            text = fsio.read_linked(path, fsio.MAX_MANAGED_FILE_BYTES)
        except AgentError as exc:
            raise AgentError(f"{exc.message} (a link to {os.path.realpath(path)})") from None
        seen = check(text)
        if seen in good:
            return ActionFact(True, seen, seen)
        return ActionFact(False, seen, f"{want} (it is a link to {os.path.realpath(path)}; change it there)")

    return ActionRule(rule_id, str(path), observe, fix=None)


def _rc_rule(rule_id: str, path: Path, line: str) -> Rule:
    if path.is_symlink():
        return _linked_rule(
            rule_id, path, _count_sourcing, {"sourced", "via shell-init"}, 'add eval "$(workspace-agent shell-init)"'
        )
    return FileRule(
        rule_id, path, lambda text: ensure_rc_line(text, line), summarize=_count_sourcing, title="sources the env file",
        user_file=True,
    )


def legacy_rule(path: Path) -> Rule:
    if path.is_symlink():
        return _linked_rule("shell.legacy-plaintext-key", path, _count_legacy, {"none"}, "remove the old block")

    def render(text: str | None) -> str | None:
        return None if text is None else remove_legacy(text)[0]

    return FileRule(
        "shell.legacy-plaintext-key", path, render, summarize=_count_legacy, title="old plaintext key block removed",
        user_file=True,
    )


def plaintext_key_rule(desired: Desired, key: str) -> ActionRule:
    """Report-only: the key written by hand into a start file (after the old blocks are gone)."""
    home = desired.paths.home

    def observe() -> ActionFact:
        found: list[str] = []
        for name in PLAINTEXT_CANDIDATES:
            path = home / name
            try:
                text = fsio.read_linked(path, fsio.MAX_MANAGED_FILE_BYTES)
            except AgentError as exc:
                raise AgentError(f"cannot look for a plaintext key: {exc.message}") from None
            if text is None:
                continue
            text = remove_legacy(text)[0] if name == ".bashrc" else text
            found += [f"~/{name}:{n}" for n, item in enumerate(text.splitlines(), 1) if key in item]
        if not found:
            return ActionFact(True, "none", "none")
        return ActionFact(False, "key in plain text at " + ", ".join(found), "remove those lines (not written by the agent)")

    return ActionRule("shell.plaintext-key", "shell start files", observe, fix=None, title="no key in start files")


def completion_script(shell: str) -> str:
    """click's completion script for the CLI (completions are computed by the CLI when asked)."""
    from click.shell_completion import get_completion_class

    from workspace_agent.cli import cli

    cls = get_completion_class(shell)
    if cls is None:
        raise AgentError(f"no completion for shell {shell!r}: choose one of {', '.join(SHELLS)}")
    complete = cls(cli, {}, "workspace-agent", "_WORKSPACE_AGENT_COMPLETE")
    return complete.source_template % complete.source_vars()  # no version probe: bash ≥ 4.4 is a given here


def completion_file_text(shell: str, path: Path) -> str:
    """The completion file's desired text: a header, then completion_script(shell).

    Rendering the script imports click and the whole CLI, as much as the rest of a check costs.
    The header names the agent and click versions that made it and the sha256 of the rest, so
    when the file on disk carries this installation's header and its hash matches, it is exactly
    what rendering would give, and it is used without rendering anything.
    """
    from workspace_agent import __version__, fsio

    version = _click_version()
    head = f"# workspace-agent {__version__}, click {version}: completion for {shell}; sha256 "
    if version is not None:
        try:
            current = fsio.read_fact(path, max_bytes=256 * 1024).text
        except AgentError:
            current = None
        first, _, body = (current or "").partition("\n")
        if first.startswith(head) and first == head + sha256_hex(body.encode()):
            return str(current)
    body = completion_script(shell)
    return f"{head}{sha256_hex(body.encode())}\n{body}"


@cache
@cache
def _click_version() -> str | None:
    """click's version from its installed metadata (a directory name), without importing it."""
    import sys

    for entry in sys.path:
        try:
            names = os.listdir(entry or ".")
        except OSError:
            continue
        for name in names:
            if name.startswith("click-") and name.endswith(".dist-info"):
                return name.removeprefix("click-").removesuffix(".dist-info")
    return None


def rules(desired: Desired, key: KeyResolution) -> list[Rule]:
    paths = desired.paths
    home = paths.home
    found: list[Rule] = [legacy_rule(home / ".bashrc")]
    if desired.config.ai_assistant == "none":
        return found
    line = rc_line(desired)
    found += [
        generated_file("shell.env-file", paths.shell_env_file, posix_script(desired), mode=0o644, title="gateway env"),
        _rc_rule("shell.rc.bash", home / ".bashrc", line),
        generated_file("shell.completion.bash", paths.bash_completion_file,
                       completion_file_text("bash", paths.bash_completion_file)),
    ]
    if present("zsh", home / ".zshrc"):
        found.append(_rc_rule("shell.rc.zsh", home / ".zshrc", line))
    if present("fish", paths.config_home / "fish"):
        found += [
            generated_file("shell.fish", paths.fish_env_file, fish_script(desired), mode=0o644, title="gateway env"),
            generated_file("shell.completion.fish", paths.fish_completion_file,
                           completion_file_text("fish", paths.fish_completion_file)),
        ]
    if key.key is not None:
        found.append(plaintext_key_rule(desired, key.key))
    return found
