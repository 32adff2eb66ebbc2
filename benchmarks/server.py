"""Server benchmarks: ingest throughput (wrk) and latency at a fixed offered rate (open loop) for
SQLite and PostgreSQL, with a bare Starlette/uvicorn endpoint measured in the same run as the
ceiling. Every server and load generator is its own process on loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from benchmarks import wrk
from benchmarks.drift import REPO, Credentials, drift_server, hello_server, pg_available, pg_schema

TARGET_SQLITE_RPS = 2000
TARGET_P99_MS = 25.0
TARGET_FRACTION_OF_HELLO = 0.5


def uvicorn_flavour(python: str) -> str:
    """Which event loop and HTTP parser uvicorn picks in `python` ("auto": uvloop/httptools if installed)."""
    probe = ("import importlib.util as u, uvicorn; print(uvicorn.__version__, "
             "'uvloop' if u.find_spec('uvloop') else 'asyncio', 'httptools' if u.find_spec('httptools') else 'h11')")
    done = subprocess.run([python, "-c", probe], capture_output=True, check=False, text=True, timeout=60)
    return done.stdout.strip() or f"unknown ({done.stderr.strip()[-200:]})"


def loadgen(python: str, env: dict[str, str], *args: str, timeout: float = 900) -> dict[str, Any]:
    """Run `python -m benchmarks.loadgen …` as its own process; its JSON answer."""
    done = subprocess.run([python, "-m", "benchmarks.loadgen", *args], env={**env, "PYTHONPATH": str(REPO)},
                          cwd=REPO, capture_output=True, check=False, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed ({done.returncode}): {done.stderr[-1500:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _throughput(url: str, path: str, tokens: dict[str, str], *, duration: float, workdir: Path,
                python: str, env: dict[str, str], tokens_file: Path | None) -> dict[str, Any]:
    """wrk when installed, else the Python load generator in closed loop (then it may be the limit)."""
    if wrk.available():
        result = wrk.run(url, path, tokens, duration=duration, connections=32, threads=1, workdir=workdir)
        result["tool"] = "wrk -t1 -c32"
        return result
    args = ["closed", "--url", url, "--path", path, "--concurrency", "32", "--duration", str(duration)]
    if tokens_file:
        args += ["--tokens", str(tokens_file)]
    result = loadgen(python, env, *args)
    result["tool"] = "python loadgen, 32 connections (install wrk: the client may be the limit)"
    return result


def run_server_suite(python: str, workdir: Path | None = None, *, duration: float = 10.0, rounds: int = 2,
                     rate: float = 300.0, rate_duration: float = 20.0, workspaces: int = 1000) -> dict[str, Any]:
    """hello / SQLite / PostgreSQL throughput in `rounds` interleaved rounds, then the fixed rate."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="bench-server-"))
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    creds = Credentials()
    pg_problem = pg_available()
    load_before = os.getloadavg()
    out: dict[str, Any] = {"workspaces": workspaces, "report_rules": 14, "postgresql_skipped": pg_problem,
                           "uvicorn": uvicorn_flavour(python)}
    with contextlib.ExitStack() as stack:
        targets: dict[str, Any] = {"hello": stack.enter_context(hello_server(python, env, log=workdir / "hello.log"))}
        dbs = {"sqlite": f"sqlite:///{workdir / 'drift.db'}"}
        if pg_problem is None:
            dbs["postgresql"] = stack.enter_context(pg_schema())
        tokens: dict[str, dict[str, str]] = {}
        for name, url in dbs.items():
            running = stack.enter_context(drift_server(python, url, creds, env, log=workdir / f"{name}.log"))
            targets[name] = running
            tokens_file = workdir / f"tokens-{name}.json"
            enrolled = loadgen(python, env, "enroll", "--url", running.url, f"--secret={creds.enrollment}",  # a secret may start with "-"
                               "--count", str(workspaces), "--concurrency", "16", "--tokens-out", str(tokens_file))
            tokens[name] = json.loads(tokens_file.read_text())
            out.setdefault(name, {})["enroll"] = enrolled
        for round_no in range(rounds):
            for name, running in targets.items():
                path = "/hello" if name == "hello" else "/api/v1/reports"
                result = _throughput(running.url, path, tokens.get(name, {}), duration=duration, workdir=workdir,
                                     python=python, env=env, tokens_file=workdir / f"tokens-{name}.json"
                                     if name != "hello" else None)
                out.setdefault(name, {}).setdefault("throughput_rounds", []).append(result)
        for name in dbs:
            out[name]["fixed_rate"] = loadgen(
                python, env, "rate", "--url", targets[name].url, "--tokens", str(workdir / f"tokens-{name}.json"),
                "--rate", str(rate), "--duration", str(rate_duration), "--drift-every", "20")
    for name in targets:
        rounds_ = out[name]["throughput_rounds"]
        out[name]["throughput_rps"] = max(r["throughput_rps"] for r in rounds_)
        out[name]["errors"] = sum(r.get("non_2xx", 0) + r.get("socket_errors", 0) + r.get("errors", 0) for r in rounds_)
    hello = out["hello"]["throughput_rps"]
    for name in dbs:
        out[name]["fraction_of_hello"] = round(out[name]["throughput_rps"] / hello, 3)
    out["load_avg_before"] = [round(x, 2) for x in load_before]
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    out["offered_rate_rps"] = rate
    sqlite = out["sqlite"]
    out["targets"] = {
        f"SQLite ingest ≥ {TARGET_SQLITE_RPS} reports/s": sqlite["throughput_rps"] >= TARGET_SQLITE_RPS,
        f"SQLite p99 < {TARGET_P99_MS:g} ms at {rate:g} reports/s": (sqlite["fixed_rate"]["p99_ms"] or 1e9) < TARGET_P99_MS
        and sqlite["fixed_rate"]["errors"] == 0,
        f"SQLite ≥ {TARGET_FRACTION_OF_HELLO:.0%} of the bare hello endpoint": sqlite["fraction_of_hello"] >= TARGET_FRACTION_OF_HELLO,
    }
    if "postgresql" in out and "fixed_rate" in out["postgresql"]:
        pg = out["postgresql"]
        out["targets"][f"PostgreSQL p99 < {TARGET_P99_MS:g} ms at {rate:g} reports/s"] = (
            (pg["fixed_rate"]["p99_ms"] or 1e9) < TARGET_P99_MS and pg["fixed_rate"]["errors"] == 0)
    return out
