"""Run a command as a child process and measure what it cost: wall, CPU (user+sys), peak RSS.

Commands are started by a small launcher process (launcher.py, see why there). CPU time and peak
RSS come from `os.wait4`, the kernel's accounting of the child and of every
descendant it waited for (curl and python3 under the bash baseline count too). CPU time is much
less sensitive to other load on the machine than wall time, so both are kept.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self


@dataclass(frozen=True)
class Sample:
    """One run of one command."""

    wall_s: float
    cpu_s: float  # user + system, child and its waited-for descendants
    maxrss_kb: int  # the largest resident set among them
    exit_code: int


@dataclass(frozen=True)
class Stats:
    """Median, min and max of one measure over n runs."""

    n: int
    median: float
    min: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Stats:
        if not values:
            raise ValueError("no samples")
        return cls(len(values), statistics.median(values), min(values), max(values))

    def as_dict(self, scale: float = 1.0, digits: int = 1) -> dict[str, float | int]:
        return {
            "n": self.n,
            "median": round(self.median * scale, digits),
            "min": round(self.min * scale, digits),
            "max": round(self.max * scale, digits),
        }


class CommandFailed(Exception):
    """A benchmarked command exited with an unexpected code (the numbers would be meaningless)."""


class Launcher:
    """The launcher process (launcher.py) that starts and measures commands for us."""

    def __init__(self, python: str = sys.executable) -> None:
        self._proc = subprocess.Popen(
            [python, "-I", "-S", str(Path(__file__).with_name("launcher.py"))],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        hello = json.loads(self._read())
        self.own_rss_kb = int(hello["launcher_rss_kb"])  # a floor under every peak RSS it reports

    def _read(self) -> str:
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the benchmark launcher stopped (exit {self._proc.wait()})")
        return line

    def run(self, argv: Sequence[str], env: Mapping[str, str], *, cwd: Path | None = None,
            stdout: Path | None = None) -> Sample:
        """Start `argv` and return what it cost. Output goes to `stdout` or /dev/null."""
        assert self._proc.stdin is not None
        job = {"argv": list(argv), "env": dict(env), "cwd": str(cwd) if cwd else None,
               "stdout": str(stdout) if stdout else None}
        self._proc.stdin.write(json.dumps(job) + "\n")
        reply = json.loads(self._read())
        if "error" in reply:
            raise RuntimeError(f"the launcher could not run {argv[0]}: {reply['error']}")
        return Sample(reply["wall_s"], reply["cpu_s"], reply["maxrss_kb"], reply["exit_code"])

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=10)
        if self._proc.stdout:
            self._proc.stdout.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


@dataclass(frozen=True)
class Command:
    """A command to benchmark and the exit codes that mean it did what it should."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    ok_codes: tuple[int, ...] = (0,)
    cwd: Path | None = None


def interleaved(launcher: Launcher, commands: Sequence[Command], runs: int, *, seed: int = 4,
                warmup: int = 1, scratch: Path | None = None) -> dict[str, list[Sample]]:
    """`runs` rounds; every round runs each command once, in a fresh random order.

    Interleaving makes slow drifts of machine load hit every command alike; shuffling removes
    any effect of position (cache warmed by the previous command). A command that exits with an
    unexpected code stops the benchmark, with its output when `scratch` is given.
    """
    rng = random.Random(seed)
    samples: dict[str, list[Sample]] = {c.name: [] for c in commands}
    for round_no in range(warmup + runs):
        order = list(commands)
        rng.shuffle(order)
        for command in order:
            log = scratch / "last-output.txt" if scratch else None
            sample = launcher.run(command.argv, command.env, cwd=command.cwd, stdout=log)
            if sample.exit_code not in command.ok_codes:
                output = log.read_text(errors="replace")[-2000:] if log else ""
                raise CommandFailed(f"{command.name} exited {sample.exit_code} "
                                    f"(expected {command.ok_codes}):\n{output}")
            if round_no >= warmup:
                samples[command.name].append(sample)
    return samples


def summarize(samples: Sequence[Sample]) -> dict[str, Stats]:
    """wall, cpu (seconds) and rss (kB) statistics of one command's samples."""
    return {
        "wall": Stats.of([s.wall_s for s in samples]),
        "cpu": Stats.of([s.cpu_s for s in samples]),
        "rss": Stats.of([float(s.maxrss_kb) for s in samples]),
    }
