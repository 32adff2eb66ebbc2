"""A simulated fleet: N workspaces enroll, then heartbeat with jitter and drift now and then, all
from one asyncio process on loopback, bounded in count and time. It says whether the drift server
keeps up: the backlog (reports due but not yet answered) must stay flat, with no errors.

    python -m benchmarks.fleet --url http://127.0.0.1:8080 --secret S --admin-token T \
        --workspaces 50000 --heartbeat 300 --duration 300 --drift-rate 0.02

Each workspace reports at its own phase in the heartbeat interval (a fleet that has been running
for a while), then every interval × U(1 − jitter, 1 + jitter) like the agent. With probability
`drift-rate` a report flips the workspace between compliant and drifted (a `check` report with a
rule in drift, or back). Latency is counted from when a report was due, so a server that falls
behind shows as latency and as a growing backlog, never as silently fewer requests.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import json
import random
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import reports
from benchmarks.http1 import HttpError, Pool
from benchmarks.loadgen import Tally, enroll, gets, percentiles

CONNECTIONS = 64  # like many agents at once; due reports beyond wait in the simulator (backlog)


@dataclass
class Workspace:
    wid: str
    token: str
    drifted: bool = False


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of y over x (0 for fewer than two points)."""
    if len(points) < 2:
        return 0.0
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return 0.0 if var == 0 else sum((x - mx) * (y - my) for x, y in points) / var


def verdict(result: dict[str, Any]) -> tuple[bool, list[str]]:
    """Held = no errors and a flat backlog that never holds more than 2 s of reports.

    (Reports still queued when the run ends are backlog, not losses: the backlog checks see them.)"""
    why: list[str] = []
    rate = result["offered_rps"]
    if result["errors"]:
        why.append(f"{result['errors']} errors")
    if result["backlog_slope_per_s"] > 0.01 * rate:
        why.append(f"backlog grows by {result['backlog_slope_per_s']:.1f} reports/s")
    if result["backlog_max"] > 2 * rate:
        why.append(f"backlog reached {result['backlog_max']} reports (over 2 s of work)")
    return not why, why


async def simulate(url: str, fleet: list[Workspace], *, heartbeat_s: float, jitter: float, drift_rate: float,
                   duration: float, seed: int = 7, admin_token: str | None = None,
                   page_every_s: float = 15.0) -> dict[str, Any]:
    """Run the fleet for `duration` seconds; what the server did with it."""
    rng = random.Random(seed)
    start = time.perf_counter()
    heap = [(start + rng.uniform(0, heartbeat_s), i) for i in range(len(fleet))]
    heapq.heapify(heap)
    tally = Tally()
    due = answered = flips = 0
    waiting: deque[tuple[float, int]] = deque()
    in_flight = 0
    samples: list[tuple[float, int]] = []
    page_latencies: list[float] = []
    end = start + duration

    async with Pool(url, CONNECTIONS, 10.0) as pool, Pool(url, 1, 60.0) as page_pool:
        async def send(when: float, index: int) -> None:
            nonlocal answered, in_flight, flips
            ws = fleet[index]
            kind = "heartbeat"
            if rng.random() < drift_rate:
                ws.drifted = not ws.drifted
                flips += 1
                kind = "check"
            body = reports.body(ws.wid, drifted=ws.drifted, kind=kind)
            try:
                status, _ = await pool.request("POST", "/api/v1/reports", body, {
                    "Authorization": f"Bearer {ws.token}", "Content-Type": "application/json"})
                if status in (200, 201, 202):
                    tally.ok(time.perf_counter() - when)
                else:
                    tally.fail(f"HTTP {status}")
            except HttpError as exc:
                tally.fail(str(exc).split(":")[0])
            finally:
                answered += 1
                in_flight -= 1

        async def pages() -> None:
            while time.perf_counter() < end and admin_token:
                began = time.perf_counter()
                try:
                    status, _ = await page_pool.request("GET", "/", headers={"Authorization": f"Bearer {admin_token}"})
                    if status == 200:
                        page_latencies.append(time.perf_counter() - began)
                except HttpError:
                    pass
                await asyncio.sleep(page_every_s)

        page_task = asyncio.create_task(pages())
        tasks: set[asyncio.Task[None]] = set()
        next_sample = start
        while True:
            now = time.perf_counter()
            if now >= end:
                break
            while heap and heap[0][0] <= now:
                when, index = heapq.heappop(heap)
                due += 1
                waiting.append((when, index))
                next_due = when + heartbeat_s * rng.uniform(1 - jitter, 1 + jitter)
                heapq.heappush(heap, (next_due, index))
            while waiting and in_flight < CONNECTIONS:
                when, index = waiting.popleft()
                in_flight += 1
                task = asyncio.create_task(send(when, index))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            if now >= next_sample:
                samples.append((now - start, due - answered))
                next_sample += 1.0
            wake = min(heap[0][0] if heap else end, next_sample, end)
            await asyncio.sleep(max(0.0, min(wake - time.perf_counter(), 0.05)))
        offered = due
        if tasks:
            await asyncio.wait(tasks, timeout=15)
        page_task.cancel()
    elapsed = time.perf_counter() - start
    second_half = [p for p in samples if p[0] >= duration / 2]
    result: dict[str, Any] = {
        "workspaces": len(fleet),
        "heartbeat_s": heartbeat_s,
        "jitter": jitter,
        "drift_rate": drift_rate,
        "duration_s": duration,
        "offered_rps": round(len(fleet) / heartbeat_s, 1),
        "due": offered,
        "answered": len(tally.latencies) + sum(tally.failures.values()),
        "ok": len(tally.latencies),
        "errors": sum(tally.failures.values()),
        "error_kinds": dict(tally.failures),
        "achieved_rps": round(len(tally.latencies) / duration, 1),
        "flips": flips,
        "backlog_max": max((b for _, b in samples), default=0),
        "backlog_end": samples[-1][1] if samples else 0,
        "backlog_slope_per_s": round(slope([(t, float(b)) for t, b in second_half]), 3),
        "elapsed_s": round(elapsed, 1),
        **percentiles(tally.latencies),
        "fleet_page_during_load": percentiles(page_latencies) | {"n": len(page_latencies)},
    }
    held, why = verdict(result)
    result["held"] = held
    result["not_held_because"] = why
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    t0 = time.perf_counter()
    tokens, enrolled = await enroll(args.url, args.secret, args.workspaces, args.concurrency, args.prefix, 0,
                                    args.enroll_deadline)
    enroll_s = time.perf_counter() - t0
    fleet = [Workspace(wid, tok) for wid, tok in tokens.items()]
    if len(fleet) < args.workspaces:
        return {"enroll": enrolled, "error": f"only {len(fleet)} of {args.workspaces} workspaces enrolled"}
    result = await simulate(args.url, fleet, heartbeat_s=args.heartbeat, jitter=args.jitter,
                            drift_rate=args.drift_rate, duration=args.duration, admin_token=args.admin_token)
    result["enroll"] = enrolled | {"seconds": round(enroll_s, 1)}
    if args.admin_token:
        quiet: dict[str, Any] = {}
        for name, path in (("fleet page /", "/"),
                           ("API first 500", "/api/v1/workspaces?limit=500"),
                           ("API drifted only", "/api/v1/workspaces?status=drifted&limit=500"),
                           ("API search", "/api/v1/workspaces?q=" + reports.workspace_id(4242, args.prefix))):
            quiet[name] = await gets(args.url, path, args.admin_token, args.page_requests)
        result["fleet_page_after"] = quiet
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fleet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the drift server (loopback)")
    parser.add_argument("--secret", required=True, help="its enrollment secret")
    parser.add_argument("--admin-token", help="an admin token: also time the fleet page")
    parser.add_argument("--workspaces", type=int, default=50_000)
    parser.add_argument("--heartbeat", type=float, default=300.0, help="seconds between heartbeats")
    parser.add_argument("--jitter", type=float, default=0.1, help="heartbeat jitter (0.1: ×[0.9, 1.1])")
    parser.add_argument("--drift-rate", type=float, default=0.02, help="share of reports that change state")
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of heartbeats (bounded)")
    parser.add_argument("--concurrency", type=int, default=32, help="parallel enrollments")
    parser.add_argument("--enroll-deadline", type=float, default=900.0)
    parser.add_argument("--page-requests", type=int, default=10)
    parser.add_argument("--prefix", default="fleet")
    args = parser.parse_args(argv)
    if not (0 < args.workspaces <= 200_000 and 0 < args.duration <= 3600 and args.heartbeat > 0):
        parser.error("bounded runs only: 1–200,000 workspaces, 1–3600 s")
    if not args.url.startswith(("http://127.", "http://localhost")):
        parser.error("loopback only: --url must be http://127.x.x.x:PORT or http://localhost:PORT")
    print(json.dumps(asyncio.run(run(args))))
    return 0


if __name__ == "__main__":
    sys.exit(main())


def run_fleet_suite(python: str, workdir: Path, *, workspaces: int, heartbeat_s: float, duration: float,
                    drift_rate: float = 0.02, db: str = "sqlite", enroll_concurrency: int = 4) -> dict[str, Any]:
    """Start the drift server on a fresh database and run this simulator against it, as its own process."""
    import contextlib
    import os
    import subprocess

    from benchmarks.drift import REPO, Credentials, drift_server, pg_schema

    workdir.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    creds = Credentials()
    load_before = os.getloadavg()
    with contextlib.ExitStack() as stack:
        url = stack.enter_context(pg_schema()) if db == "postgresql" else f"sqlite:///{workdir / 'fleet.db'}"
        server = stack.enter_context(drift_server(python, url, creds, env, log=workdir / "fleet-server.log",
                                                  heartbeat_s=int(heartbeat_s)))
        argv = [python, "-m", "benchmarks.fleet", "--url", server.url, f"--secret={creds.enrollment}",  # a secret may start with "-"
                f"--admin-token={creds.admin}", "--workspaces", str(workspaces), "--heartbeat", str(heartbeat_s),
                "--duration", str(duration), "--drift-rate", str(drift_rate),
                "--concurrency", str(enroll_concurrency)]
        done = subprocess.run(argv, env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, capture_output=True, check=False, text=True,
                              timeout=duration + 1800)
        if done.returncode != 0:
            raise RuntimeError(f"fleet simulator failed ({done.returncode}): {done.stderr[-1500:]}")
        result = dict(json.loads(done.stdout.strip().splitlines()[-1]))
    result["db"] = db
    result["load_avg_before"] = [round(x, 2) for x in load_before]
    result["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    rate = workspaces / heartbeat_s
    result["targets"] = {
        f"{workspaces:,} workspaces at a {heartbeat_s:g} s heartbeat ({rate:.0f} reports/s) held "
        "(no errors, flat backlog)": bool(result.get("held")),
    }
    return result
