"""`workspace-agent key`: show the stored key masked, or hand it whole to a program.

Claude Code's `apiKeyHelper` (and scripts such as `OPENAI_API_KEY=$(workspace-agent key --print)`)
need the whole key on stdout. A terminal never gets it: a key printed there stays in the
scrollback and in screen recordings, so `--print` refuses when stdout is a TTY.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from workspace_agent import fsio
from workspace_agent.errors import AgentError
from workspace_agent.redact import mask


@dataclass(frozen=True)
class KeyOutput:
    stdout: str
    warning: str | None = None


def read_key(path: Path) -> tuple[str, str | None]:
    """The key in `path`, and a warning when others may read the file. AgentError when unusable."""
    fact = fsio.read_fact(path, max_bytes=4096)
    if fact.text is None:
        raise AgentError(f"no key stored at {path}: run `workspace-agent bootstrap` first")
    key = fact.text.strip()
    if not key or any(ch.isspace() for ch in key) or key.startswith("("):
        raise AgentError(f"{path} holds no usable key yet: run `workspace-agent bootstrap` (it asks the key provisioner)")
    warning = None
    if fact.mode is not None and fact.mode & 0o077:
        warning = f"{path} is readable by others (mode {fact.mode:04o}); `workspace-agent bootstrap` sets it back to 0600"
    return key, warning


def key_output(path: Path, *, whole: bool, stdout_is_tty: bool) -> KeyOutput:
    key, warning = read_key(path)
    if not whole:
        return KeyOutput(f"{mask(key)} (stored in {path})\n", warning)
    if stdout_is_tty:
        raise AgentError(
            "refusing to print the key to a terminal (it would stay in the scrollback); "
            "use it in a pipe or command substitution, e.g. `OPENAI_API_KEY=$(workspace-agent key --print)`"
        )
    return KeyOutput(key + "\n", warning)
