"""`python -m benchmarks`: run the benchmarks, print a table, write benchmarks/results/<timestamp>.json.

    python -m benchmarks                     # everything available
    python -m benchmarks --only agent --runs 40
    python -m benchmarks --quick             # a smoke run: few runs, short durations
    python -m benchmarks --only watch        # workspace-agent watch: flip → restored, idle CPU, memory
    python -m benchmarks --only spend        # the spend pages with 50,000 keys × 30 days × 2 models
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import table
from benchmarks.agent import DEFAULT_PYTHON, REPO, run_agent_suite
from benchmarks.big_settings import QUICK_SIZES, SIZES, run_big_settings_suite
from benchmarks.drift import server_available
from benchmarks.fleet import run_fleet_suite
from benchmarks.server import run_server_suite
from benchmarks.spend import run_spend_suite
from benchmarks.watch import run_watch_suite

SUITES = ("agent", "settings", "server", "fleet", "watch", "spend")
QUIET_LOAD = 1.5


def _commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, check=False,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, check=False, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(SUITES), help=f"comma-separated subset of {', '.join(SUITES)}")
    parser.add_argument("--runs", type=int, default=30, help="runs of each agent command (median of these)")
    parser.add_argument("--python", type=Path, default=DEFAULT_PYTHON,
                        help="the interpreter the agent runs with (the real one, not a pyenv shim; "
                             "default: this one, so run the benchmark from the agent's venv)")
    parser.add_argument("--results-dir", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 runs, short load phases, small fleet")
    parser.add_argument("--server-duration", type=float, default=10.0, help="seconds of each throughput phase")
    parser.add_argument("--rate", type=float, default=300.0, help="offered reports/s of the latency phase")
    parser.add_argument("--fleet-workspaces", type=int, default=50_000)
    parser.add_argument("--fleet-heartbeat", type=float, default=300.0, help="seconds between heartbeats")
    parser.add_argument("--fleet-duration", type=float, default=300.0, help="seconds of simulated heartbeats")
    parser.add_argument("--fleet-db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--spend-keys", type=int, default=50_000, help="keys of the spend suite (× 30 days × 2 models)")
    parser.add_argument("--watch-flips", type=int, default=100, help="flips of a locked key for `watch`")
    parser.add_argument("--watch-idle", type=float, default=60.0, help="seconds of the watcher's idle CPU measurement")
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
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
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
        print(f"agent: {runs} interleaved runs of 6 commands …", file=sys.stderr, flush=True)
        results["agent"] = run_agent_suite(runs, args.python, workdir / "agent")
    if "settings" in chosen:
        sizes = QUICK_SIZES if args.quick else SIZES
        print(f"settings: a user settings.json of {', '.join(map(str, sizes))} keys …", file=sys.stderr, flush=True)
        results["settings"] = run_big_settings_suite(str(args.python), workdir / "settings", sizes)
    server_wanted = [s for s in ("server", "fleet", "spend") if s in chosen]
    if server_wanted and not server_available():
        results["meta"]["skipped"] = f"{', '.join(server_wanted)}: the drift server (server/) is not in this checkout"
        server_wanted = []
    if "server" in server_wanted:
        duration = 3.0 if args.quick else args.server_duration
        print(f"server: hello / SQLite / PostgreSQL, {duration:g} s phases …", file=sys.stderr, flush=True)
        results["server"] = run_server_suite(str(args.python), workdir / "server", duration=duration,
                                             rounds=1 if args.quick else 2, rate=args.rate,
                                             rate_duration=5.0 if args.quick else 20.0,
                                             workspaces=200 if args.quick else 1000)
    if "fleet" in server_wanted:
        size = 2000 if args.quick else args.fleet_workspaces
        heartbeat = 20.0 if args.quick else args.fleet_heartbeat
        length = 20.0 if args.quick else args.fleet_duration
        print(f"fleet: {size} workspaces, {heartbeat:g} s heartbeat, {length:g} s …", file=sys.stderr, flush=True)
        results["fleet"] = run_fleet_suite(str(args.python), workdir / "fleet", workspaces=size,
                                           heartbeat_s=heartbeat, duration=length, db=args.fleet_db)
    if "spend" in server_wanted:
        keys = 2000 if args.quick else args.spend_keys
        print(f"spend: {keys} keys × 30 days × 2 models of spend rows …", file=sys.stderr, flush=True)
        results["spend"] = run_spend_suite(str(args.python), workdir / "spend", keys=keys, days=30,
                                           models=2, db=args.fleet_db, requests=3 if args.quick else 10)
    if "watch" in chosen:
        flips, idle = (20, 10.0) if args.quick else (args.watch_flips, args.watch_idle)
        print(f"watch: {flips} flips, {idle:g} s idle …", file=sys.stderr, flush=True)
        results["watch"] = run_watch_suite(args.python, workdir / "watch", flips=flips, idle_s=idle)
    results["meta"]["load_avg_end"] = [round(x, 2) for x in os.getloadavg()]
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = args.results_dir / f"{stamp}.json"
    path.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n")
    print(table.render(results), end="")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
