"""`python -m benchmarks`: run the benchmarks, print a table, write benchmarks/results/<timestamp>.json.

    python -m benchmarks                     # everything available
    python -m benchmarks --only agent --runs 40
    python -m benchmarks --quick             # a smoke run: few runs, short durations
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks import table
from benchmarks.agent import DEFAULT_PYTHON, REPO, run_agent_suite

SUITES = ("agent",)
QUIET_LOAD = 1.5


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma-separated subset of {', '.join(SUITES)}")
    parser.add_argument("--runs", type=int, default=30, help="runs of each agent command (median of these)")
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON,
                        help="the interpreter the agent runs with (the real one, not a pyenv shim)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 runs, short load phases")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in SUITES]
    if unknown:
        parser.error(f"unknown suite(s) {', '.join(unknown)}: choose from {', '.join(SUITES)}")
    if not args.python.is_file():
        parser.error(f"{args.python} does not exist: pass --python with the interpreter to measure")
    runs = 3 if args.quick else args.runs
    if runs < 1:
        parser.error("--runs must be at least 1")

    load = os.getloadavg()
    results: dict[str, Any] = {"meta": {
        "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": _commit(),
        "cpus": os.cpu_count(),
        "load_avg_start": [round(x, 2) for x in load],
        "quick": args.quick,
    }}
    if load[0] >= QUIET_LOAD:
        results["meta"]["noisy"] = (f"1-minute load average {load[0]:.2f} ≥ {QUIET_LOAD} at start: other work "
                                    "shares the CPUs, wall times are inflated (CPU times much less)")
    workdir = Path(tempfile.mkdtemp(prefix="workspace-agent-bench-"))
    if "agent" in chosen:
        print(f"agent: {runs} interleaved runs of 5 commands …", file=sys.stderr, flush=True)
        results["agent"] = run_agent_suite(runs, args.python, workdir / "agent")
    results["meta"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = args.results_dir / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(table.render(results), end="")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
