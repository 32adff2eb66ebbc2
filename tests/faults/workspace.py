"""A prepared workspace for fault tests: a home where every managed file already exists in an
older version (so that a bootstrap changes each of them), the agent run as a real process on it,
and snapshots to compare file trees.

    ws = Workspace.prepare(tmp_path / "ws")
    proc = ws.run("bootstrap", "--json")
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
NEW_KEY = "sk-new-Vb7Qz2Kp9Lm4Xw1Rt6"
OLD_KEY = "sk-old-Hq5Jw8Nc3Zp0Ld2Ys"

USER_SETTINGS = """// My own settings: the agent must keep every byte of these
{
\t"editor.fontSize": 14, // I like it big
\t/* theme */ "workbench.colorTheme": "Solarized Light",
\t"files.trimTrailingWhitespace": true,
}
"""

OLD_ROO_IMPORT = json.dumps({"providerProfiles": {"currentApiConfigName": "old", "apiConfigs": {"old": {
    "apiProvider": "openai", "openAiBaseUrl": "http://old-gateway:4000/v1", "openAiApiKey": OLD_KEY}}}}, indent=2) + "\n"
OLD_OPENCODE = json.dumps({"$schema": "https://opencode.ai/config.json", "model": "litellm/old-model",
                           "provider": {"litellm": {"options": {"baseURL": "http://old-gateway:4000/v1"}}}}, indent=2) + "\n"
OLD_PROMPT = "# Old enforcement text (an earlier platform version)\nBe careful.\n"
# The user's ~/.bashrc, with the block the old platform script appended at every start.
OLD_BASHRC = f"""# ~/.bashrc: mine
alias ll='ls -l'
export EDITOR=vim

# AI Configuration (LiteLLM)
export OPENAI_API_KEY={OLD_KEY}
export OPENAI_API_BASE=http://old-gateway:4000/v1
"""


@dataclass
class Workspace:
    """One temp workspace: home, OpenCode's managed dir, an empty policy, and the agent's env."""

    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def managed_dir(self) -> Path:
        return self.root / "etc-opencode"

    @property
    def policy(self) -> Path:
        return self.root / "policy.toml"

    @property
    def state_dir(self) -> Path:
        return self.home / ".local" / "state" / "workspace-agent"

    @classmethod
    def prepare(cls, root: Path, *, old_files: bool = True, key: str = NEW_KEY) -> Workspace:
        """A home with the user's commented settings and (optionally) older agent files."""
        ws = cls(root, {"LITELLM_API_KEY": key} if key else {})
        ws.home.mkdir(parents=True, exist_ok=True)
        ws.policy.write_text("")
        write(ws.home / ".local/share/code-server/User/settings.json", USER_SETTINGS, 0o644)
        if old_files:
            write(ws.home / ".config/workspace-agent/litellm.key", OLD_KEY + "\n", 0o644)
            write(ws.home / ".config/roo-code/settings.json", OLD_ROO_IMPORT, 0o644)
            write(ws.home / ".roo/rules/00-platform-enforcement.md", OLD_PROMPT, 0o644)
            write(ws.home / ".config/opencode/opencode.json", OLD_OPENCODE, 0o644)
            write(ws.home / ".config/opencode/enforcement.md", OLD_PROMPT, 0o644)
            write(ws.managed_dir / "opencode.json", OLD_OPENCODE, 0o644)
            write(ws.home / ".bashrc", OLD_BASHRC, 0o644)
        else:
            ws.managed_dir.mkdir(parents=True, exist_ok=True)
        return ws

    def restore(self, pristine: Path) -> None:
        """Put this workspace back to a copy of `pristine` (modes kept). Same root each time, so
        the absolute paths the agent writes into files are the same in every run."""
        if self.root.exists():
            shutil.rmtree(self.root)
        clone(pristine, self.root)

    def env(self, **extra: str) -> dict[str, str]:
        """A clean environment: nothing of this machine's agent, XDG or Coder variables."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            "HOME": str(self.home),
            "WORKSPACE_AGENT_POLICY": str(self.policy),
            "WORKSPACE_AGENT_MANAGED_DIR": str(self.managed_dir),
            "LANG": "C.UTF-8",
        }
        env.update(self.extra_env)
        env.update(extra)
        return env

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "workspace_agent", *args]

    def run(self, *args: str, timeout: float = 120, prefix: tuple[str, ...] = (),
            preexec_fn: Callable[[], None] | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, *self.command(*args)], capture_output=True, text=True, env=self.env(**extra),
            timeout=timeout, cwd=REPO, check=False, preexec_fn=preexec_fn,
        )


def clone(source: Path, target: Path) -> None:
    """Copy a tree with modes, links and (as root) owners."""
    shutil.copytree(source, target, symlinks=True)
    if os.geteuid() == 0:  # copies are root's: give each path its original owner back
        for path in [source, *source.rglob("*")]:
            info = path.lstat()
            os.chown(target / path.relative_to(source), info.st_uid, info.st_gid, follow_symlinks=False)


def write(path: Path, text: str, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


Snapshot = dict[str, tuple[int, bytes | None]]


def snapshot(root: Path, *, skip: tuple[str, ...] = ()) -> Snapshot:
    """relative path → (st_mode, bytes; None for dirs and links) for everything under root."""
    found: Snapshot = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        info = path.lstat()
        is_file = path.is_file() and not path.is_symlink()
        found[rel] = (info.st_mode, path.read_bytes() if is_file else None)
    return found


STATE = ".local/state/workspace-agent"  # the agent's own state (last run, lock): not managed files


# Run as the unprivileged user `nobody`, keeping only CAP_DAC_READ_SEARCH: it may read and search
# any directory (this machine's Python lives under /root, mode 0700) but every write is checked
# as for any other user.
NOBODY = 65534
AS_NOBODY = ("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
             "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")


def can_run_as_nobody() -> bool:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        return False
    probe = subprocess.run([*AS_NOBODY, sys.executable, "-c", "import os; print(os.geteuid())"],
                           capture_output=True, text=True, check=False)
    return probe.returncode == 0 and probe.stdout.strip() == str(NOBODY)


def give_to_nobody(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        os.chown(path, NOBODY, NOBODY, follow_symlinks=False)


# Bootstrap puts the lockdown on disk before its first network byte (run.py: local rules first),
# so the settings files it locks are written twice: the lockdown alone, then with the clients'
# keys. That middle version is whole and legitimate; it is what a lockdown-only run leaves.
LOCKDOWN_FILES = (
    "home/.local/share/code-server/User/settings.json",
    "home/.local/share/code-server/Machine/settings.json",
)


def lockdown_phase(ws: Workspace, pristine: Path) -> Snapshot:
    """The lockdown-written files as bootstrap's first phase leaves them (a run with no client),
    then back to `pristine`."""
    ws.restore(pristine)
    done = ws.run("bootstrap", "-q", "--ai-assistant", "none")
    assert done.returncode == 0, done.stderr
    middle = {rel: seen for rel, seen in snapshot(ws.root).items() if rel in LOCKDOWN_FILES}
    ws.restore(pristine)
    return middle


def old_or_new(before: Snapshot, after: Snapshot, now: Snapshot, *, skip: tuple[str, ...] = (),
               middle: Snapshot | None = None) -> list[str]:
    """Every file in `now` is byte-and-mode identical to its `before` or its `after` version, or
    to its `middle` (lockdown-phase) version where one is given (or absent where one of them is);
    no other files. Directories are not compared."""
    middle = middle or {}
    problems: list[str] = []
    for rel in sorted(set(before) | set(after) | set(now)):
        if any(rel == s or rel.startswith(s + "/") for s in skip):
            continue
        seen, old, new = now.get(rel), before.get(rel), after.get(rel)
        if seen is not None and seen[1] is None:
            continue
        if seen is None:
            if old is not None and new is not None:
                problems.append(f"{rel}: gone (it exists before and after a normal run)")
        elif seen != old and seen != new and seen != middle.get(rel):
            problems.append(f"{rel}: neither the old nor the new version")
    return problems


def temp_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob(".*.tmp"))
