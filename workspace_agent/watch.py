"""`workspace-agent watch`: put a changed locked value back within a second, from file events.

The lockdown is otherwise applied at start and checked on a schedule; a palette command that
deletes `chat.disableAIFeatures` would leave minutes to hours of chat. This resident process
watches the directories of the files that hold locked values (User and Machine settings, the
managed client configs), waits for a burst of writes to settle (debounce), then runs the same
rules `bootstrap` applies on just the files that changed: only the lockdown's keys and the managed
configs are put back; the user's other keys and comments stay (the rules edit one key each).

* Directories, not files, are watched, so rename-replacement, delete and recreate of the file or
  of a whole directory are seen (a missing directory is watched through its nearest ancestor).
* Each correction is one line in the log and an event for the drift server (corrections.py).
* Fixes take the bootstrap lock, so a running `bootstrap` and the watcher never write at once; a
  second watcher refuses to start (its own lock).
* The desired state is built once at start; the key is read again for every fix, so a key that
  `bootstrap` rotated is never put back to the old one. A changed policy needs a restart.
* Idle, it blocks in select() on the inotify descriptor and a signal pipe: no timer runs.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from workspace_agent import inotify, lock
from workspace_agent.config import AgentConfig
from workspace_agent.corrections import Correction, Sender, append_log, log_path, new_correction
from workspace_agent.errors import AgentError
from workspace_agent.paths import Paths
from workspace_agent.plan import FileRule, RuleResult, apply_plan, build_plan
from workspace_agent.redact import redact

OWNED_PREFIXES = ("vscode.", "roo.", "zoo.", "opencode.", "claude.")  # the lockdown and the managed client configs
DEBOUNCE_S = 0.05  # quiet time that ends a burst of writes
MAX_DELAY_S = 0.3  # a burst that never goes quiet is fixed after this long anyway
LOCK_WAIT_S = 0.5  # bootstrap holds the run lock: try again after it
RETRY_S = 0.5
EMPTY_WAITS = 4  # a file read empty is looked at again this many times (one debounce each) before it is fixed


def owned(rule: object) -> bool:
    return isinstance(rule, FileRule) and rule.rule_id.startswith(OWNED_PREFIXES)


@dataclass
class Watched:
    """Which directory each inotify watch is on, and the files we care about."""

    files: frozenset[Path]
    by_wd: dict[int, Path] = field(default_factory=dict)

    @property
    def dirs(self) -> set[Path]:
        return set(self.by_wd.values())


def watch_dir_for(path: Path) -> Path:
    """The file's directory, or its nearest existing ancestor while that directory is missing."""
    directory = path.parent
    while not directory.is_dir() and directory != directory.parent:
        directory = directory.parent
    return directory


def arm(notify: inotify.Inotify, files: frozenset[Path], old: Watched | None) -> Watched:
    """(Re)place the watches: one per directory that holds, or will hold, a watched file."""
    if old is not None:
        for wd in old.by_wd:
            notify.remove(wd)
    watched = Watched(files)
    for directory in sorted({watch_dir_for(f) for f in files}):
        wd = notify.add_dir(directory)
        if wd is not None:
            watched.by_wd[wd] = directory
    return watched


def sort_events(events: list[inotify.Event], watched: Watched) -> tuple[set[Path], bool]:
    """(watched files touched, whether the watches must be placed again)."""
    touched: set[Path] = set()
    rearm = False
    for event in events:
        if event.overflow:
            return set(watched.files), True
        directory = watched.by_wd.get(event.wd)
        if directory is None:
            continue
        if event.mask & inotify.GONE:
            rearm = True  # the directory was deleted or moved: watch its ancestor until it is back
            touched |= {f for f in watched.files if f.is_relative_to(directory)}
            continue
        entry = directory / event.name
        if entry in watched.files:
            touched.add(entry)
        elif event.mask & inotify.IN_ISDIR:
            below = {f for f in watched.files if f.is_relative_to(entry)}
            if below:  # a directory on the way to a watched file appeared, went or moved
                rearm = True
                touched |= below
    return touched, rearm


def owned_rules(desired: Any, key: Any) -> list[FileRule]:
    """The owned file rules, in `desired.rules()`'s order, built without the others (the shell
    rules import click for completion scripts: 7 MB in a resident process). A test checks that
    this is exactly `desired.rules()` filtered by `owned`."""
    from workspace_agent import lockdown
    from workspace_agent.clients import registry
    from workspace_agent.desired import unique_rules

    found: list[object] = []
    for client in registry.selected(desired.config.ai_assistant):
        found += client.rules(desired, key)
    found += lockdown.rules(desired)
    return [rule for rule in unique_rules(found) if owned(rule)]  # type: ignore[misc, arg-type]


@dataclass
class Fixer:
    """Builds the rules once; `restore` applies the owned ones to the files that changed."""

    config: AgentConfig
    policy: dict[str, Any]
    paths: Paths
    desired: Any = None  # a Desired, built in __post_init__ (desired.py is imported lazily, after lean_hashing)
    last_errors: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from workspace_agent.desired import build_desired

        self.desired = build_desired(self.config, dict(self.policy), self.paths)

    def rules(self) -> tuple[list[FileRule], tuple[str, ...]]:
        from workspace_agent.keysource import resolve_key

        key = resolve_key(self.config, self.paths, network=False)
        secrets = tuple(s for s in (*self.config.secrets, key.key or "") if s)
        return owned_rules(self.desired, key), secrets

    def files(self) -> frozenset[Path]:
        return frozenset(rule.path for rule in self.rules()[0])

    def restore(self, changed: set[Path], first_event: float, *, accept_empty: bool = True) -> list[Correction] | None:
        """Apply the owned rules of the changed files; one Correction per rule put back or failing.

        None (nothing done; look again shortly) when a file was read empty and `accept_empty` is
        False: a writer that truncates and then writes (as editors save in place) may be between
        the two, and "empty" would make every locked key look unset and the user's text lost.
        """
        all_rules, secrets = self.rules()
        chosen = [rule for rule in all_rules if rule.path in changed]
        if not chosen:
            return []
        plan = build_plan(chosen, secrets)
        if not accept_empty and any(f.fact.exists and f.fact.text == "" for f in plan.files):
            return None
        results = apply_plan(plan) if (plan.files or plan.errors) else plan.results
        latency = int((time.monotonic() - first_event) * 1000)
        found: list[Correction] = []
        failed: dict[tuple[str, str | None], list[RuleResult]] = {}
        for result in results:
            if result.state == "error":  # a broken file fails each of its rules the same way: one line
                failed.setdefault((result.target, result.message), []).append(result)
                continue
            correction = self._correction(result, latency, secrets)
            if correction is not None:
                found.append(correction)
        for same in failed.values():
            correction = self._correction(same[0], latency, secrets, also=len(same) - 1)
            if correction is not None:
                found.append(correction)
        return found

    def _correction(self, result: RuleResult, latency: int, secrets: tuple[str, ...], also: int = 0) -> Correction | None:
        target = self.paths.show(Path(result.target))
        if result.state == "corrected":
            self.last_errors.pop(result.rule_id, None)
            return new_correction(result.rule_id, target, _hide(result.before, secrets), _hide(result.after, secrets),
                                  restored=True, latency_ms=latency)
        if result.state == "error":
            message = redact(result.message or "unknown error", secrets)
            if also:
                message += f" ({also} more locked value(s) in this file not checked)"
            if self.last_errors.get(result.rule_id) == message:
                return None  # said once; a user saving a broken file again is not news
            self.last_errors[result.rule_id] = message
            return new_correction(result.rule_id, target, _hide(result.before, secrets), None, restored=False,
                                  latency_ms=latency, message=message)
        self.last_errors.pop(result.rule_id, None)
        return None


def _hide(value: str | None, secrets: tuple[str, ...]) -> str | None:
    return None if value is None else redact(value, secrets)


def take_watch_lock(paths: Paths) -> int:
    """The watcher's own lock, held for its lifetime: a second watcher refuses to start."""
    path = paths.state_dir / "watch.lock"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise AgentError(f"cannot take the watch lock {path}: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
        os.close(fd)
        who = f" (pid {holder})" if holder.isdigit() else ""
        raise AgentError(f"another `workspace-agent watch`{who} is already running for this user ({path})") from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def run(
    config: AgentConfig,
    policy: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    debounce_s: float = DEBOUNCE_S,
    say: Callable[[str], None] = lambda _m: None,
) -> int:
    """Watch until SIGTERM/SIGINT; returns the exit code (0 on a clean stop)."""
    paths = Paths.for_home(config.home, environ)
    lock_fd = take_watch_lock(paths)
    try:
        lean_hashing()  # before build_desired imports hashlib
        return _watch(config, policy, paths, debounce_s, say)
    finally:
        os.close(lock_fd)


def _watch(config: AgentConfig, policy: Mapping[str, Any], paths: Paths, debounce_s: float,
           say: Callable[[str], None]) -> int:
    def log(line: str) -> None:
        say(line)
        append_log(paths, line)

    fixer = Fixer(config, dict(policy), paths)
    sender = Sender(config, paths, log)
    notify = inotify.Inotify()
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    stopping: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    old_wakeup = signal.set_wakeup_fd(wake_w)
    try:
        files = fixer.files()
        watched = arm(notify, files, None)  # before the first pass: nothing changed after it is missed
        sender.start()
        # A change made while we were not running is put back now, before we say we are ready.
        started = time.monotonic()
        first = _restore(fixer, paths, set(files), started, log)
        pending: set[Path] = set(files) if first is None else set()
        for correction in first or []:
            log(correction.line())
            sender.queue(correction)
        release_free_memory()  # what building the rules allocated and freed goes back to the system
        reporting = "" if sender.enabled else "; no drift server configured: corrections are only logged"
        say(f"watch: watching {len(files)} file(s) in {len(watched.dirs)} directories, log {paths.show(log_path(paths))}"
            f"{reporting} (pid {os.getpid()})")
        burst_started = due_at = time.monotonic()
        empty_waits = 0
        while not stopping:
            timeout = max(0.0, due_at - time.monotonic()) if pending else None
            ready, _, _ = select.select([notify.fd, wake_r], [], [], timeout)
            if wake_r in ready:
                _drain(wake_r)
            if notify.fd in ready:
                touched, rearm = sort_events(notify.read(), watched)
                if rearm:
                    watched = arm(notify, files, watched)
                    touched = set(files)  # events between dropping and placing a watch are not seen
                if touched:
                    now = time.monotonic()
                    if not pending:
                        burst_started = now
                    pending |= touched
                    due_at = min(now + debounce_s, burst_started + MAX_DELAY_S)
                continue
            if not pending or stopping or time.monotonic() < due_at:
                continue
            corrections = _restore(fixer, paths, pending, burst_started, log, accept_empty=empty_waits >= EMPTY_WAITS)
            if corrections is None:  # a file read empty (a writer between truncate and write), or
                empty_waits += 1  # bootstrap holds the run lock (it is fixing things too): look again
                due_at = time.monotonic() + (debounce_s if empty_waits <= EMPTY_WAITS else RETRY_S)
                continue
            empty_waits = 0
            pending = set()
            for correction in corrections:
                log(correction.line())
                sender.queue(correction)
        say(f"watch: stopped ({signal.Signals(stopping[0]).name})")
        return 0
    finally:
        notify.close()
        sender.stop()
        signal.set_wakeup_fd(old_wakeup)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        os.close(wake_r)
        os.close(wake_w)


def _restore(fixer: Fixer, paths: Paths, pending: set[Path], started: float,
             log: Callable[[str], None], *, accept_empty: bool = True) -> list[Correction] | None:
    """One fix under the bootstrap lock; None when the lock is busy or a file was read empty
    (try again shortly)."""
    try:
        with lock.exclusive(paths.lock_file, LOCK_WAIT_S):
            return fixer.restore(pending, started, accept_empty=accept_empty)
    except AgentError as exc:
        if exc.message.startswith("another workspace-agent run"):
            return None
        log(f"watch: could not check {len(pending)} file(s): {exc.message}")
        return []
    except Exception as exc:  # noqa: BLE001 - a resident process logs the unexpected and keeps watching
        log(f"watch: unexpected error while restoring ({type(exc).__name__}: {exc}); still watching")
        return []


def fast_main(args: list[str], environ: Mapping[str, str]) -> int | None:
    """`workspace-agent watch [-q]` without click (the entry point's fast path, like `status`):
    the CLI module alone is ~2.5 MB that a resident process would carry. None: not a form this
    handles (options, --help), so the full CLI runs it."""
    if any(arg not in ("-q", "--quiet") for arg in args):
        return None
    from workspace_agent.config import load_config, policy_path, read_policy

    quiet = bool(args)

    def say(message: str) -> None:
        if not quiet:
            print(f"workspace-agent: {message}", file=sys.stderr, flush=True)

    try:
        path, required = policy_path(None, environ)
        policy = read_policy(path, required)
        config = load_config({}, environ, policy)
        return run(config, policy, environ=environ, say=say)
    except AgentError as exc:
        print(f"workspace-agent: {exc.message}", file=sys.stderr, flush=True)
        return exc.exit_code


def lean_hashing() -> None:
    """Use hashlib's built-in hashes, not OpenSSL's: the watcher only hashes small texts, and not
    mapping libcrypto keeps ~3.5 MB out of a process that stays resident in every workspace. Only
    before hashlib is first imported (afterwards it changes nothing)."""
    if "hashlib" not in sys.modules:
        sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]


def release_free_memory() -> None:
    import gc

    gc.collect()
    trim = getattr(inotify.libc(), "malloc_trim", None)  # glibc only
    if trim is not None:
        trim(0)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 512):
            pass
    except BlockingIOError:
        return
