"""The measuring harness: wall, CPU and peak RSS of real child processes, through the launcher."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks.measure import Command, CommandFailed, Launcher, Stats, interleaved, summarize

# Left out of `scripts/test --fast`: each test times real child processes.
pytestmark = pytest.mark.slow

PY = sys.executable
ENV = {"PATH": "/usr/bin:/bin"}


@pytest.fixture
def launcher():
    with Launcher(PY) as running:
        yield running


def test_cpu_time_counts_a_busy_child_and_not_a_sleeping_one(launcher: Launcher) -> None:
    busy = launcher.run([PY, "-S", "-c", "import time\nt=time.process_time()\nwhile time.process_time()-t<0.3: pass"], ENV)
    idle = launcher.run([PY, "-S", "-c", "import time; time.sleep(0.3)"], ENV)
    assert busy.cpu_s >= 0.25 and busy.wall_s >= 0.25
    assert idle.wall_s >= 0.3 and idle.cpu_s < 0.15


def test_cpu_time_includes_grandchildren(launcher: Launcher) -> None:
    burn = "import time\nt=time.process_time()\nwhile time.process_time()-t<0.2: pass"
    sample = launcher.run(["/bin/sh", "-c", f'"{PY}" -S -c "{burn}"'], ENV)
    assert sample.cpu_s >= 0.18


def test_peak_rss_sees_a_big_allocation_and_a_small_process_stays_small(launcher: Launcher) -> None:
    big = launcher.run([PY, "-S", "-c", "b = bytearray(120 * 2**20)"], ENV)
    small = launcher.run(["/bin/true"], ENV)
    assert big.maxrss_kb >= 120 * 1024
    assert small.maxrss_kb < 40 * 1024  # the launcher's own few MB are the floor, not the harness
    assert launcher.own_rss_kb < 40 * 1024


def test_exit_code_and_output_file(launcher: Launcher, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    sample = launcher.run(["/bin/sh", "-c", "echo hello; echo oops >&2; exit 3"], ENV, stdout=out, cwd=tmp_path)
    assert sample.exit_code == 3
    assert out.read_text() == "hello\noops\n"


def test_a_command_that_cannot_start_exits_127(launcher: Launcher, tmp_path: Path) -> None:
    out = tmp_path / "out.txt"
    sample = launcher.run([str(tmp_path / "missing")], ENV, stdout=out)
    assert sample.exit_code == 127
    assert "cannot run" in out.read_text()


def test_interleaved_runs_every_command_the_same_number_of_times(launcher: Launcher) -> None:
    commands = [Command("a", ("/bin/true",), ENV), Command("b", ("/bin/sh", "-c", "exit 2"), ENV, ok_codes=(2,))]
    samples = interleaved(launcher, commands, 4, warmup=1)
    assert {name: len(s) for name, s in samples.items()} == {"a": 4, "b": 4}
    assert all(s.exit_code == 2 for s in samples["b"])


def test_interleaved_stops_on_an_unexpected_exit_code_and_shows_the_output(launcher: Launcher, tmp_path: Path) -> None:
    commands = [Command("fails", ("/bin/sh", "-c", "echo it broke; exit 1"), ENV)]
    with pytest.raises(CommandFailed, match="(?s)fails exited 1.*it broke"):
        interleaved(launcher, commands, 2, scratch=tmp_path)


def test_stats_and_summary() -> None:
    assert Stats.of([3.0, 1.0, 2.0, 10.0]) == Stats(4, 2.5, 1.0, 10.0)
    assert Stats.of([0.0123]).as_dict(1000) == {"n": 1, "median": 12.3, "min": 12.3, "max": 12.3}
    with pytest.raises(ValueError):
        Stats.of([])
    from benchmarks.measure import Sample

    summary = summarize([Sample(0.1, 0.05, 1000, 0), Sample(0.3, 0.07, 3000, 0), Sample(0.2, 0.06, 2000, 0)])
    assert summary["wall"].median == 0.2 and summary["cpu"].max == 0.07 and summary["rss"].min == 1000
