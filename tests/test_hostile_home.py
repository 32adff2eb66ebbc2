"""Root over a home its user controls (issue 14): every way the user can prepare the home, each a
named test. The agent runs as a real process as root over a home owned by an unprivileged user
(`wa-hostile`, created with useradd when missing); every test checks that what the user planted
was refused or contained, and that the lockdown was still written.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from benchmarks.big_settings import settings_text
from workspace_agent import jsonc

USER = "wa-hostile"
REPO = Path(__file__).resolve().parent.parent
NEW_KEY = "sk-new-Vb7Qz2Kp9Lm4Xw1Rt6"
ROOT_SECRET = "root-only line: do not print me"
SETTINGS = ".local/share/code-server/User/settings.json"
LOCKED = "chat.disableAIFeatures"  # one of the lockdown's keys (settings/lockdown.toml)
RUN_TIMEOUT = 120

# Left out of `scripts/test --fast`: each test runs the agent as root over an unprivileged user's home.
pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="runs the agent as root over another user's home"), pytest.mark.slow]


def _user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
                       check=False, capture_output=True)  # another test may have made it meanwhile
        return pwd.getpwnam(USER)


@dataclass
class Hostile:
    """A root-owned 0755 directory (the user can reach its home) holding the user's home, root's
    files the user would like the agent to touch, the managed dirs and the policy."""

    root: Path
    uid: int
    gid: int

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def outside(self) -> Path:
        return self.root / "outside"

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(REPO),
            "HOME": str(self.home),
            "WORKSPACE_AGENT_POLICY": str(self.root / "policy.toml"),
            "WORKSPACE_AGENT_MANAGED_DIR": str(self.root / "etc-opencode"),
            "WORKSPACE_AGENT_CLAUDE_MANAGED_DIR": str(self.root / "etc-claude-code"),
            "LITELLM_API_KEY": NEW_KEY,
            "LANG": "C.UTF-8",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        env.update(extra)
        return env

    def run(self, *args: str, prefix: tuple[str, ...] = (), **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*prefix, sys.executable, "-m", "workspace_agent", *args], capture_output=True,
                              text=True, env=self.env(**extra), timeout=RUN_TIMEOUT, cwd=REPO, check=False)

    def users(self, relative: str, *, directory: bool = False, text: str = "", mode: int = 0o644) -> Path:
        """Make a file (or directory, with its parents) in the home as the user would have."""
        path = self.home / relative
        for parent in [*reversed(path.relative_to(self.home).parents)][1:]:
            made = self.home / parent
            if not made.exists():
                made.mkdir()
                os.chown(made, self.uid, self.gid)
        if directory:
            path.mkdir(exist_ok=True)
        else:
            path.write_text(text)
            path.chmod(mode)
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        return path

    def link(self, relative: str, target: Path | str) -> Path:
        path = self.home / relative
        if not path.parent.exists():
            self.users(str(path.parent.relative_to(self.home)), directory=True)
        path.symlink_to(target)
        os.lchown(path, self.uid, self.gid)
        return path

    def roots(self, name: str, text: str = ROOT_SECRET + "\n", mode: int = 0o600) -> Path:
        """A root-owned file outside the home (what a planted link points at)."""
        path = self.outside / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)
        return path


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    user = _user()
    root = Path(tempfile.mkdtemp(prefix="wa-hostile-", dir="/tmp"))
    root.chmod(0o755)
    made = Hostile(root, user.pw_uid, user.pw_gid)
    made.home.mkdir()
    os.chown(made.home, made.uid, made.gid)
    made.outside.mkdir()
    (root / "policy.toml").write_text("")
    for managed in ("etc-opencode", "etc-claude-code"):
        (root / managed).mkdir()
    try:
        yield made
    finally:
        shutil.rmtree(root, ignore_errors=True)


def fingerprint(path: Path) -> tuple[int, int, int, bytes | str | None]:
    """Kind and mode, owner, group, and the bytes (or a link's target) of one path."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        content: bytes | str | None = os.readlink(path)
    elif stat.S_ISREG(info.st_mode):
        content = path.read_bytes()
    else:
        content = None
    return info.st_mode, info.st_uid, info.st_gid, content


def tree(root: Path) -> dict[str, tuple[int, int, int, bytes | str | None]]:
    return {str(p.relative_to(root)): fingerprint(p) for p in sorted(root.rglob("*"))}


def outcome(done: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    assert "Traceback" not in done.stderr, done.stderr
    return {rule["rule_id"]: rule for rule in json.loads(done.stdout)["rules"]}


def assert_lockdown_written(h: Hostile) -> None:
    settings = h.home / SETTINGS
    assert jsonc.loads(settings.read_text()).get(LOCKED) is True, "the lockdown was not written"
    assert settings.stat().st_uid == h.uid


def assert_owned_by_user(h: Hostile) -> None:
    for path in [h.home, *h.home.rglob("*")]:
        info = path.lstat()
        assert (info.st_uid, info.st_gid) == (h.uid, h.gid), f"{path} is owned by {info.st_uid}:{info.st_gid}"


# --- the run lock -------------------------------------------------------------------------------


def test_lock_symlinked_to_a_root_file_is_left_untouched(hostile: Hostile) -> None:
    target = hostile.roots("passwd-like", "root:x:0:0\n", 0o644)
    before = fingerprint(target)
    hostile.link(".local/state/workspace-agent/lock", target)
    done = hostile.run("bootstrap", "--json")
    assert done.returncode == 0, done.stderr
    assert fingerprint(target) == before
    assert_lockdown_written(hostile)


def test_report_lock_symlinked_to_a_root_file_is_left_untouched(hostile: Hostile) -> None:
    target = hostile.roots("shadow-like")
    before = fingerprint(target)
    hostile.link(".local/state/workspace-agent/report/lock", target)
    done = hostile.run("bootstrap", "--json", "--report", DRIFT_SERVER_URL="http://127.0.0.1:9",
                       CODER_WORKSPACE_ID="ws-hostile")
    assert "Traceback" not in done.stderr and done.returncode == 0, done.stderr
    assert fingerprint(target) == before
    queued = list((hostile.home / ".local/state/workspace-agent/report/spool").glob("*.json"))
    assert queued and all(p.stat().st_uid == hostile.uid for p in queued)  # the report waits, as the user's
    assert_lockdown_written(hostile)


def test_dangling_lock_link_creates_no_file(hostile: Hostile) -> None:
    missing = hostile.outside / "created-by-root"
    hostile.link(".local/state/workspace-agent/lock", missing)
    done = hostile.run("bootstrap", "--json")
    assert done.returncode == 0, done.stderr
    assert not missing.exists() and not missing.is_symlink()
    assert_lockdown_written(hostile)


# --- linked parent directories -------------------------------------------------------------------

# (linked dir, a file the agent manages below it): root's copy of that file sits in the link's target.
LINKED_PARENTS = {
    ".config": "workspace-agent/litellm.key",
    ".config/opencode": "opencode.json",
    ".config/roo-code": "settings.json",
    ".roo/rules": "00-platform-enforcement.md",
    ".local": "share/code-server/User/settings.json",
}


@pytest.mark.parametrize("linked", list(LINKED_PARENTS), ids=lambda d: "linked-" + d.strip(".").replace("/", "-"))
def test_a_linked_parent_directory_is_not_followed(hostile: Hostile, linked: str) -> None:
    target_dir = hostile.outside / "target"
    roots_file = target_dir / LINKED_PARENTS[linked]
    roots_file.parent.mkdir(parents=True)
    roots_file.write_text('{"' + ROOT_SECRET + '": 1}\n')
    roots_file.chmod(0o600)
    before = tree(hostile.outside)
    hostile.link(linked, target_dir)
    check = hostile.run("check")
    assert ROOT_SECRET not in check.stdout + check.stderr
    done = hostile.run("bootstrap", "--json")
    rules = outcome(done)
    assert tree(hostile.outside) == before, "something outside the home was written"
    refused = [r for r in rules.values() if r["state"] == "error"]
    assert refused and all("symbolic link" in r["message"] for r in refused), refused
    assert all(str(hostile.home / linked) in r["message"] for r in refused)
    if linked == ".local":  # the User settings are below the link: the root-owned layers still go out
        assert (hostile.root / "etc-opencode/opencode.json").exists()
        assert rules["vscode.setting." + LOCKED]["state"] == "error"
    else:
        assert_lockdown_written(hostile)
    assert_owned_by_user(hostile)


def test_a_linked_extensions_dir_deletes_nothing_outside(hostile: Hostile) -> None:
    outside = hostile.outside / "extensions"
    copilot = outside / "github.copilot-1.300.0"
    copilot.mkdir(parents=True)
    (copilot / "package.json").write_text(json.dumps({"publisher": "github", "name": "copilot", "version": "1.300.0"}))
    (outside / "extensions.json").write_text(json.dumps([{"identifier": {"id": "github.copilot"},
                                                           "relativeLocation": "github.copilot-1.300.0"}]))
    before = tree(hostile.outside)
    hostile.link(".local/share/code-server/extensions", outside)
    done = hostile.run("bootstrap", "--json")
    rules = outcome(done)
    assert tree(hostile.outside) == before, "a folder outside the extensions dir was deleted"
    assert rules["extension.absent.github.copilot"]["state"] == "error"
    assert "extensions is a symbolic link" in rules["extension.absent.github.copilot"]["message"]
    assert_lockdown_written(hostile)


# --- ownership ------------------------------------------------------------------------------------


def test_a_fresh_home_is_the_users_after_a_root_run(hostile: Hostile) -> None:
    done = hostile.run("bootstrap", "--json")
    assert done.returncode == 0, done.stderr
    assert_owned_by_user(hostile)
    key = hostile.home / ".config/workspace-agent/litellm.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and key.read_text().strip() == NEW_KEY
    assert (hostile.root / "etc-opencode/opencode.json").stat().st_uid == 0  # /etc stays root's
    assert_lockdown_written(hostile)


def _as_user(h: Hostile) -> tuple[str, ...]:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to run the agent as the user")
    # CAP_DAC_READ_SEARCH only so that this machine's Python under /root can be read.
    return ("setpriv", f"--reuid={h.uid}", f"--regid={h.gid}", "--init-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search")


def test_a_root_run_and_a_user_run_leave_the_same_home(hostile: Hostile) -> None:
    for managed in ("etc-opencode", "etc-claude-code"):  # writable by both, so both decide alike
        os.chown(hostile.root / managed, hostile.uid, hostile.gid)
    hostile.users(".bashrc", text="# mine\nalias ll='ls -l'\n")
    hostile.users(SETTINGS, text='// mine\n{\n\t"editor.fontSize": 14,\n}\n')
    pristine = hostile.root / "pristine"
    shutil.copytree(hostile.home, pristine, symlinks=True)
    done = hostile.run("bootstrap", "--json")
    assert done.returncode == 0, done.stderr
    as_root = tree(hostile.home)
    shutil.rmtree(hostile.home)
    shutil.copytree(pristine, hostile.home, symlinks=True)
    for path in [hostile.home, *hostile.home.rglob("*")]:
        os.chown(path, hostile.uid, hostile.gid, follow_symlinks=False)
    done = hostile.run("bootstrap", "--json", prefix=_as_user(hostile))
    assert done.returncode == 0, done.stderr
    as_user = tree(hostile.home)
    volatile = {".local/state/workspace-agent/last-run.json", ".local/state/workspace-agent/lock"}  # times, a pid
    assert {k: v for k, v in as_root.items() if k not in volatile} == {k: v for k, v in as_user.items() if k not in volatile}
    assert all(as_root[k][:3] == as_user[k][:3] for k in volatile)  # same mode and owner
    assert len(as_root) > 25


# --- FIFOs and devices where a file is read --------------------------------------------------------

PLANTED = {
    "profile": ".profile",
    "bashrc": ".bashrc",
    "extension-package-json": ".local/share/code-server/extensions/evil.ext-1.0.0/package.json",
    "spool-next-seq": ".local/state/workspace-agent/report/spool/next-seq",
}


@pytest.mark.parametrize("kind", ["fifo", "dev-zero"])
@pytest.mark.parametrize("where", list(PLANTED))
def test_a_fifo_or_device_never_stalls_the_run(hostile: Hostile, where: str, kind: str) -> None:
    relative = PLANTED[where]
    if kind == "fifo":
        path = hostile.users(relative)
        path.unlink()
        os.mkfifo(path)
        os.chown(path, hostile.uid, hostile.gid)
    else:
        hostile.link(relative, "/dev/zero")
    started = time.monotonic()
    done = hostile.run("bootstrap", "--json", "--report", DRIFT_SERVER_URL="http://127.0.0.1:9",
                       CODER_WORKSPACE_ID="ws-hostile")
    took = time.monotonic() - started
    rules = outcome(done)
    assert took < 60, f"the run took {took:.0f} s"
    errors = {r["rule_id"]: r["message"] for r in rules.values() if r["state"] == "error"}
    if where in ("profile", "bashrc", "extension-package-json"):
        assert errors and all(str(hostile.home / relative) in m for m in errors.values()), errors
        assert all(("FIFO" in m) if kind == "fifo" else ("device" in m or "symbolic link" in m)
                   for m in errors.values()), errors
    else:  # the queue works around it: the report waits with the next number
        assert not errors, errors
        assert list((hostile.home / relative).parent.glob("000000000001.json"))
    assert_lockdown_written(hostile)
    again = hostile.run("bootstrap", "--json", "--wait", "0")  # the lock was released
    assert "another workspace-agent run" not in again.stderr


# --- size and secrets ------------------------------------------------------------------------------


def test_an_8_mb_settings_json_is_merged_as_the_user(hostile: Hostile) -> None:
    text = settings_text(400_000)
    hostile.users(SETTINGS, text=text)
    started = time.monotonic()
    done = hostile.run("bootstrap", "--json")
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 60
    merged = (hostile.home / SETTINGS).read_text()
    assert merged.startswith(text[: text.rindex("\n}")])  # every byte the user had, then our keys
    assert jsonc.loads(merged)["s.k0399999"] == 999
    assert_lockdown_written(hostile)


def test_an_old_key_that_is_not_sk_shaped_is_not_printed(hostile: Hostile) -> None:
    old = "plainOldKey-Hq5Jw8Nc3Zp0Ld2Ys"
    hostile.users(".config/workspace-agent/litellm.key", text=old + "\n", mode=0o600)
    roo = {"providerProfiles": {"apiConfigs": {"default": {"openAiApiKey": old, "openAiBaseUrl": "http://old"}}}}
    hostile.users(".config/roo-code/settings.json", text=json.dumps(roo, indent=2) + "\n", mode=0o600)
    for command in ("check", "plan"):
        done = hostile.run(command)
        assert done.returncode == 2, done.stderr
        assert old not in done.stdout + done.stderr
        assert old[-4:] in done.stdout  # masked to its last four, as a key is
    done = hostile.run("bootstrap", "--json")
    assert done.returncode == 0 and old not in done.stdout + done.stderr
    assert_lockdown_written(hostile)


@pytest.fixture
def hardlinks_unprotected() -> Iterator[None]:
    knob = Path("/proc/sys/fs/protected_hardlinks")
    try:
        was = knob.read_text().strip()
        knob.write_text("0\n")
    except OSError:
        pytest.skip("cannot set fs.protected_hardlinks here")
    try:
        yield
    finally:
        knob.write_text(was + "\n")


def test_a_hard_linked_root_file_is_not_printed_nor_changed(hostile: Hostile, hardlinks_unprotected: None) -> None:
    secret = hostile.roots("root-only.conf")  # 0600 root: the user may link it, not read it
    readable = hostile.roots("root-readable.conf", "export VISIBLE=1\n" + ROOT_SECRET + "\n", 0o644)
    before = (fingerprint(secret), fingerprint(readable))
    user = _as_user(hostile)[:4]
    for source, name in ((secret, ".bashrc"), (readable, ".zshrc")):
        made = subprocess.run([*user, "ln", str(source), str(hostile.home / name)], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr  # the user made the hard link, as the issue did
    check = hostile.run("check")
    assert ROOT_SECRET not in check.stdout + check.stderr
    done = hostile.run("bootstrap", "--json")
    rules = outcome(done)
    assert ROOT_SECRET not in done.stdout + done.stderr
    assert (fingerprint(secret), fingerprint(readable)) == before
    assert "permission denied" in rules["shell.rc.bash"]["message"]
    assert_lockdown_written(hostile)


def test_a_root_that_cannot_switch_users_refuses_with_a_sentence(hostile: Hostile) -> None:
    if shutil.which("setpriv") is None:
        pytest.skip("needs setpriv to drop CAP_SETUID and CAP_SETGID")
    done = hostile.run("bootstrap", prefix=("setpriv", "--bounding-set=-setuid,-setgid", "--"))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"cannot act as the owner of {hostile.home} (uid {hostile.uid})" in done.stderr
    assert "run the agent as that user, or as root with CAP_SETUID and CAP_SETGID" in done.stderr
    assert [p for p in hostile.home.rglob("*")] == []  # nothing written as root instead


def test_the_code_server_cli_runs_wholly_as_the_user(hostile: Hostile) -> None:
    """The uninstall CLI is started with the user's ids (real and effective): a program started
    by root cannot act as root in the home. A small executable stands in for code-server's CLI
    here (the real one lives under /root on this machine, out of the user's reach) and records
    who it runs as; the rule then finds the extension still there, as it should."""
    seen = hostile.root / "cli-ran-as"
    seen.touch()
    seen.chmod(0o666)
    cli = hostile.root / "code-server"
    cli.write_text(f"#!/bin/sh\necho \"$(id -ru) $(id -u) $(id -rg) $(id -g)\" > {seen}\n")
    cli.chmod(0o755)
    ext = ".local/share/code-server/extensions"
    hostile.users(f"{ext}/github.copilot-1.300.0/package.json",
                  text=json.dumps({"publisher": "github", "name": "copilot", "version": "1.300.0"}))
    index = [{"identifier": {"id": "github.copilot"}, "relativeLocation": "github.copilot-1.300.0"}]
    hostile.users(f"{ext}/extensions.json", text=json.dumps(index))
    done = hostile.run("bootstrap", "--json", WORKSPACE_AGENT_CODE_SERVER_BIN=str(cli))
    rules = outcome(done)
    assert seen.read_text().split() == [str(hostile.uid)] * 2 + [str(hostile.gid)] * 2
    removal = rules["extension.absent.github.copilot"]  # the stand-in left the index entry
    assert removal["state"] == "error" and "still installed after code-server --uninstall-extension" in removal["message"]
    assert not (hostile.home / ext / "github.copilot-1.300.0").exists()  # the folder went, as the user
    assert_owned_by_user(hostile)
    assert_lockdown_written(hostile)
