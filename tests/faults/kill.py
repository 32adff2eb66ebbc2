"""SIGKILL a real `workspace-agent bootstrap` at chosen points, then check that nothing is torn.

Choosing the kill point. A bootstrap is ~0.2 s of wall time, of which the part that writes
files is a few milliseconds after Python's start-up: killing after a random *delay* lands in the
start-up almost every time. So the harness counts system calls instead. An unkilled reference
run is traced with `strace -e trace=%file,%desc`; the *window* is every traced call (anonymous
memory maps left out) from the moment the agent takes its lock to the end of the run: observing,
writing each file, recording the run. Trials are spread by stratified sampling: the window is
cut into as many equal slices as there are trials and each slice gets one call drawn uniformly
inside it, so a short CI run still covers the whole window and a long one hits every call. A
trial reruns the agent under `strace -e inject=NAME:signal=KILL:when=N`, the call being the N-th
call of NAME: the kernel kills the process on entry to that call, before it runs. The trial's
own trace shows where it died, so each kill is checked against its plan. Without strace, kills
fall back to a uniform random delay over the reference run's duration (weaker: see above).

After the kill: every file under the workspace must be exactly as before the run or exactly as
after an unkilled run (bytes and mode), directories only ones that either run has, temp files
only with the atomic writer's names (private when they hold a key), and the last-run record
either the old one or complete JSON. Then an unkilled bootstrap must succeed, remove the temp
files, and leave the same tree as the reference run.

Long mode (documented numbers in docs/reliability.md):

    PYTHONPATH=. python -m tests.faults.kill --trials 300 --seed 1 --json /tmp/kill.json
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tests.faults.workspace import (
    NEW_KEY,
    OLD_KEY,
    REPO,
    STATE,
    Snapshot,
    Workspace,
    clone,
    lockdown_phase,
    snapshot,
)

TRACE_SET = "%file,%desc"
_CALL = re.compile(r"^(?:\d+\s+)?([a-z0-9_]+)\(")
_TEMP = re.compile(r"^\.(.+)\.[a-z0-9_]{8}\.tmp$")
_TEMP_IN_LINE = re.compile(r"\.[a-z0-9_]{8}\.tmp\b")
# Anonymous memory maps follow the allocator, not the agent's logic: never a planned kill point.
_PATH_CALLS = frozenset({"openat", "open", "newfstatat", "stat", "lstat", "statx", "access", "faccessat",
                         "faccessat2", "mkdir", "mkdirat", "rename", "renameat", "renameat2", "unlink",
                         "unlinkat", "chmod", "fchmodat", "readlink", "readlinkat", "chdir", "execve"})
_NOT_KILL_POINTS = frozenset({"mmap", "munmap", "mprotect", "mremap", "brk"})


@dataclass(frozen=True)
class Syscall:
    index: int  # position among the traced calls of the run
    name: str
    nth: int  # it is the nth call of `name` in the run (strace's `when=`)
    line: str


def _stratified(calls: list[Syscall], count: int, rng: random.Random) -> list[Syscall | float]:
    """`count` calls: `calls` cut into `count` equal slices, one drawn uniformly in each."""
    chosen: list[Syscall | float] = []
    for n in range(count):
        low, high = n * len(calls) // count, (n + 1) * len(calls) // count
        chosen.append(calls[rng.randrange(low, max(low + 1, high)) % len(calls)])
    return chosen


def parse_trace(text: str) -> list[Syscall]:
    calls: list[Syscall] = []
    seen: collections.Counter[str] = collections.Counter()
    for line in text.splitlines():
        match = _CALL.match(line)
        if match is None:
            continue
        name = match.group(1)
        seen[name] += 1
        calls.append(Syscall(len(calls), name, seen[name], line))
    return calls


# A path argument: absolute, or relative to a directory descriptor that `strace -y` shows as `N</dir>`.
_PATH_ARG = re.compile(r'(?:\d+<([^>]*)>,\s*)?"([^"]*)"')


def paths_of(line: str) -> list[str]:
    """The absolute paths a traced call names (the agent works relative to directory descriptors)."""
    found: list[str] = []
    for directory, name in _PATH_ARG.findall(line):
        if name.startswith("/"):
            found.append(name)
        elif directory.startswith("/"):
            found.append(f"{directory}/{name}")
    return found


def where(line: str) -> str:
    """The path a traced call works on (temp names blurred), or "" when its first string is not
    a path: what a planned kill and the trial's last call must agree on besides name and count."""
    if _CALL.match(line) is None or _CALL.match(line).group(1) not in _PATH_CALLS:  # type: ignore[union-attr]
        return ""
    found = paths_of(line)
    return _TEMP_IN_LINE.sub(".XXXXXXXX.tmp", found[0]) if found else ""


@dataclass
class Reference:
    calls: list[Syscall]
    window: list[Syscall]
    before: Snapshot
    after: Snapshot
    duration_s: float
    writes: list[tuple[str, int, int]]  # (file, index of its temp's creation, index of its rename)
    middle: Snapshot = field(default_factory=dict)  # lockdown-phase versions (workspace.lockdown_phase)


@dataclass
class Trial:
    number: int
    method: str
    planned: str  # "rename#3" or "delay 0.081 s"
    label: str  # which part of the run the kill hit
    window_position: float | None  # 0..1 along the window (strace), None for delays
    killed: bool
    killed_as_planned: bool
    files_new: int  # managed files already in their new version when killed
    temps_left: int
    problems: list[str] = field(default_factory=list)
    run_s: float = 0.0


class Harness:
    """Prepare once, trace a reference run, then kill trial after trial on the same paths."""

    def __init__(self, root: Path, prepare: Callable[[Path], Workspace], args: tuple[str, ...] = ("bootstrap", "-q"),
                 method: str | None = None) -> None:
        self.root = root
        self.args = args
        self.pristine = root / "pristine"
        template = prepare(root / "ws")
        clone(template.root, self.pristine)
        self.ws = template
        self.method = method or ("strace" if shutil.which("strace") else "delay")
        self.extra = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONHASHSEED": "0"}
        self.ref: Reference | None = None

    # -- the reference run -----------------------------------------------------------------------

    def reference(self) -> Reference:
        self.ws.restore(self.pristine)
        self.ws.run(*self.args)  # warm-up: compiled modules are cached before anything is counted
        self.ws.restore(self.pristine)
        before = snapshot(self.ws.root)
        trace = self.root / "reference.trace"
        started = time.monotonic()
        proc = self.ws.run(*self.args, prefix=self._strace(trace) if self.method == "strace" else (), **self.extra)
        duration = time.monotonic() - started
        if proc.returncode != 0:
            raise RuntimeError(f"the reference run failed ({proc.returncode}): {proc.stderr}")
        after = snapshot(self.ws.root)
        calls = parse_trace(trace.read_text()) if self.method == "strace" else []
        lock = str(self.ws.state_dir)
        start = next((c.index for c in calls if any(p.startswith(lock) for p in paths_of(c.line))), 0)
        window = [c for c in calls[start:] if c.name not in _NOT_KILL_POINTS]
        self.ref = Reference(calls, window, before, after, duration, self._writes(calls),
                             lockdown_phase(self.ws, self.pristine))
        return self.ref

    def _strace(self, out: Path, kill: Syscall | None = None) -> tuple[str, ...]:
        cmd = ("strace", "-qq", "-y", "-e", f"trace={TRACE_SET}", "-o", str(out))
        if kill is not None:
            cmd += ("-e", f"inject={kill.name}:signal=KILL:when={kill.nth}")
        return cmd

    def _writes(self, calls: list[Syscall]) -> list[tuple[str, int, int]]:
        """Each atomic write in the reference trace: (file, temp created at, renamed at)."""
        opened: dict[str, int] = {}
        found: list[tuple[str, int, int]] = []
        for call in calls:
            named = paths_of(call.line)
            if not named or not _TEMP.match(named[0].rsplit("/", 1)[-1]):
                continue
            if call.name == "openat":
                opened[named[0]] = call.index
            elif call.name.startswith("rename") and named[0] in opened and len(named) > 1:
                found.append((self._show(named[1]), opened[named[0]], call.index))
        return found

    def _show(self, path: str) -> str:
        return path.replace(str(self.ws.root) + "/", "")

    def label(self, index: int) -> str:
        assert self.ref is not None
        writes = self.ref.writes
        if not writes or index < writes[0][1]:
            return "lock + observe (before any write)"
        for name, opened, renamed in writes:
            if opened <= index <= renamed:
                return f"writing {name}"
        if index > writes[-1][2]:
            return "after the last rename"
        return "between two writes (dir fsync, next file's read)"

    # -- trials ------------------------------------------------------------------------------------

    def points(self, trials: int, rng: random.Random) -> list[Syscall | float]:
        assert self.ref is not None
        if self.method == "delay":
            return [rng.uniform(0, self.ref.duration_s) for _ in range(trials)]
        # Stratified: the window is cut into `trials` equal slices and each slice gets one point
        # drawn uniformly inside it, so every part of the run is hit even in a short CI run.
        # An eighth of the points go inside the atomic writes themselves (a few calls each, now
        # that every path is walked one directory at a time they are under a tenth of the window):
        # a short CI run must still kill some writes half-way.
        window = self.ref.window
        inside = [c for c in window if any(opened <= c.index <= renamed for _n, opened, renamed in self.ref.writes)]
        in_writes = trials // 8 if inside else 0
        chosen = _stratified(window, trials - in_writes, rng) + _stratified(inside, in_writes, rng)
        rng.shuffle(chosen)
        return chosen

    def trial(self, number: int, point: Syscall | float) -> Trial:
        assert self.ref is not None
        self.ws.restore(self.pristine)
        started = time.monotonic()
        if isinstance(point, Syscall):
            trace = self.root / "trial.trace"
            proc = self.ws.run(*self.args, prefix=self._strace(trace, point), **self.extra)
            died_at = parse_trace(trace.read_text())
            killed = proc.returncode == -signal.SIGKILL or proc.returncode == 128 + signal.SIGKILL
            last = died_at[-1] if died_at else None
            as_planned = bool(
                killed and last is not None and last.name == point.name and last.nth == point.nth
                and where(last.line) == where(point.line)
            )
            window_start = self.ref.window[0].index
            position = (point.index - window_start) / max(1, len(self.ref.window) - 1)
            trial = Trial(number, "strace", f"{point.name}#{point.nth}", self.label(point.index), position,
                          killed, as_planned, 0, 0)
        else:
            proc_handle = subprocess.Popen(self.ws.command(*self.args), env=self.ws.env(**self.extra), cwd=REPO,
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(point)
            proc_handle.send_signal(signal.SIGKILL)
            code = proc_handle.wait()
            killed = code == -signal.SIGKILL
            trial = Trial(number, "delay", f"delay {point:.3f} s", "by delay", None, killed, killed, 0, 0)
        trial.run_s = time.monotonic() - started
        trial.problems += self.check_after_kill(trial)
        trial.problems += self.check_recovery()
        return trial

    # -- the checks --------------------------------------------------------------------------------

    def check_after_kill(self, trial: Trial) -> list[str]:
        assert self.ref is not None
        before, after = self.ref.before, self.ref.after
        now = snapshot(self.ws.root)
        problems: list[str] = []
        for rel in sorted(set(before) | set(after) | set(now)):
            name = rel.rsplit("/", 1)[-1]
            seen = now.get(rel)
            if seen is not None and _TEMP.match(name):
                trial.temps_left += 1
                problems += _check_temp(rel, seen, {r.rsplit("/", 1)[-1] for r in (*before, *after)})
                continue
            if rel.startswith(f"home/{STATE}/"):
                problems += _check_state_file(rel, seen, before.get(rel))
                continue
            old, new = before.get(rel), after.get(rel)
            if seen is None:
                if old is not None and new is not None:
                    problems.append(f"{rel}: missing after the kill (it existed before and after)")
                continue
            if seen[1] is None:  # a directory or link: only its existence and type are compared
                kinds = {v[0] >> 12 for v in (old, new) if v is not None}
                if seen[0] >> 12 not in kinds:
                    problems.append(f"{rel}: a directory/link that neither run has")
                continue
            if seen != old and seen != new and seen != self.ref.middle.get(rel):
                problems.append(f"{rel}: neither the old nor the new version ({_describe(seen, old, new)})")
            elif seen == new and seen != old:
                trial.files_new += 1
        return problems

    def check_recovery(self) -> list[str]:
        assert self.ref is not None
        proc = self.ws.run("bootstrap", "--json", **self.extra)
        if proc.returncode != 0:
            return [f"the run after the kill failed ({proc.returncode}): {proc.stderr.strip()[:300]}"]
        summary = json.loads(proc.stdout)
        problems = [f"after the kill, rule {r['rule_id']} failed: {r['message']}" for r in summary["rules"]
                    if r["state"] == "error"]
        skip = (f"home/{STATE}",)
        now, want = snapshot(self.ws.root, skip=skip), {k: v for k, v in self.ref.after.items()
                                                         if not k.startswith(skip[0])}
        for rel in sorted(set(now) | set(want)):
            if now.get(rel) != want.get(rel):
                problems.append(f"after recovery {rel} differs from an unkilled run ({_describe(now.get(rel), None, want.get(rel))})")
        leftovers = [rel for rel in snapshot(self.ws.root) if _TEMP.match(rel.rsplit("/", 1)[-1])
                     and not rel.startswith(f"home/{STATE}/")]
        problems += [f"temp file left after recovery: {rel}" for rel in leftovers]
        return problems


def _check_temp(rel: str, seen: tuple[int, bytes | None], names: set[str]) -> list[str]:
    match = _TEMP.match(rel.rsplit("/", 1)[-1])
    assert match is not None
    problems = []
    if match.group(1) not in names:
        problems.append(f"{rel}: a temp file for a file the agent does not write")
    mode, content = seen
    if content is None:
        problems.append(f"{rel}: a temp name that is not a regular file")
    elif (NEW_KEY.encode() in content or OLD_KEY.encode() in content) and mode & 0o077:
        problems.append(f"{rel}: a temp file holding the key with mode {mode & 0o777:04o}")
    return problems


def _check_state_file(rel: str, seen: tuple[int, bytes | None] | None, old: tuple[int, bytes | None] | None) -> list[str]:
    if seen is None or seen[1] is None or seen == old or rel.endswith("/lock"):
        return []
    try:
        json.loads(seen[1])
    except ValueError:
        return [f"{rel}: neither the old version nor complete JSON ({len(seen[1])} bytes)"]
    return []


def _describe(seen: Any, old: Any, new: Any) -> str:
    def one(value: Any) -> str:
        if value is None:
            return "absent"
        mode, content = value
        return f"mode {mode & 0o7777:04o}, {'dir' if content is None else f'{len(content)} bytes'}"

    return f"now {one(seen)}; old {one(old)}; new {one(new)}"


# -- a whole run of trials -------------------------------------------------------------------------


@dataclass
class Summary:
    method: str
    seed: int
    trials: int
    window_calls: int
    reference_run_s: float
    killed: int
    killed_as_planned: int
    by_label: dict[str, int]
    by_window_decile: list[int]
    files_new_histogram: dict[int, int]
    trials_with_temp_files: int
    problems: list[str]
    seconds: float
    mean_trial_s: float

    def text(self) -> str:
        lines = [
            (f"{self.trials} trials ({self.method}, seed {self.seed}) in {self.seconds:.1f} s "
             f"({self.mean_trial_s:.2f} s each incl. the recovery run); "
             f"reference run {self.reference_run_s:.3f} s"),
            (f"killed {self.killed}/{self.trials}, at the planned call {self.killed_as_planned}/{self.trials}; "
             f"window {self.window_calls} traced calls from taking the lock to exit"),
            "kill points by part of the run: " + ", ".join(f"{k}: {v}" for k, v in self.by_label.items()),
            "kill points by tenth of the window: " + " ".join(str(n) for n in self.by_window_decile),
            "managed files already new when killed: " + ", ".join(f"{k}: {v}" for k, v in sorted(self.files_new_histogram.items())),
            f"trials that left temp files (removed by the next run): {self.trials_with_temp_files}",
            f"problems: {len(self.problems)}",
        ]
        return "\n".join(lines + [f"  {p}" for p in self.problems[:20]])


def run_trials(root: Path, trials: int, seed: int, prepare: Callable[[Path], Workspace],
               method: str | None = None, progress: Callable[[Trial], None] = lambda _t: None) -> tuple[Summary, list[Trial]]:
    started = time.monotonic()
    harness = Harness(root, prepare, method=method)
    ref = harness.reference()
    rng = random.Random(seed)
    done: list[Trial] = []
    for number, point in enumerate(harness.points(trials, rng), 1):
        trial = harness.trial(number, point)
        done.append(trial)
        progress(trial)
    deciles = [0] * 10
    for trial in done:
        if trial.window_position is not None:
            deciles[min(9, int(trial.window_position * 10))] += 1
    labels = collections.Counter(t.label for t in done)
    order = ["lock + observe (before any write)"] + [f"writing {w[0]}" for w in ref.writes] + [
        "between two writes (dir fsync, next file's read)", "after the last rename", "by delay"]
    summary = Summary(
        method=harness.method, seed=seed, trials=len(done), window_calls=len(ref.window),
        reference_run_s=round(ref.duration_s, 3), killed=sum(t.killed for t in done),
        killed_as_planned=sum(t.killed_as_planned for t in done),
        by_label={k: labels[k] for k in order if labels[k]},
        by_window_decile=deciles,
        files_new_histogram=dict(collections.Counter(t.files_new for t in done)),
        trials_with_temp_files=sum(1 for t in done if t.temps_left),
        problems=[f"trial {t.number} ({t.planned}, {t.label}): {p}" for t in done for p in t.problems],
        seconds=round(time.monotonic() - started, 1),
        mean_trial_s=round(sum(t.run_s for t in done) / max(1, len(done)), 3),
    )
    return summary, done


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--method", choices=("strace", "delay"), default=None)
    parser.add_argument("--json", type=Path, default=None, help="write the summary and every trial here")
    args = parser.parse_args(list(argv) if argv is not None else None)
    with tempfile.TemporaryDirectory(prefix="wa-kill-") as tmp:
        summary, trials = run_trials(Path(tmp), args.trials, args.seed, Workspace.prepare, args.method,
                                     progress=lambda t: print(f"trial {t.number}: {t.label}", file=sys.stderr))
    print(summary.text())
    if args.json:
        args.json.write_text(json.dumps({"summary": asdict(summary), "trials": [asdict(t) for t in trials]}, indent=1))
    return 1 if summary.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
