"""Drift server ingest load: throughput (wrk), latency at a fixed offered rate, and the ceiling of a
bare Starlette/uvicorn "hello" endpoint measured in the same run. Loopback only, bounded in
count and time.

    PYTHONPATH=$PWD:$PWD/server python benchmarks/ingest_load.py [--db sqlite|postgres]
        [--workers N] [--workspaces N] [--duration S] [--rates 167,300] [--conns 8,32]
        [--skip-hello] [--json out.json]
    ... --fleet 50000 [--heartbeat-rate 166.7] [--heartbeat-duration 60]
    ... --replicas 1,2,3 [--pg-connection-limit 40]   (benchmarks/replicas_load.py)

The fleet mode seeds 50,000 workspaces straight into the database, times the admin pages and API
one request at a time, then sends heartbeats at 50,000 / 5 min while an admin reloads the fleet
page; it reports the writer's queue each second (a backlog would grow) and p99 per 10 s.

Every report is a realistic 14-rule report (about 3 KB) with its own report id, the token of the
workspace it names, and the current time; 2% of them flip one rule to drift and back, the rest are
heartbeats with nothing changed (what a fleet sends). The fixed-rate client is open loop: each
request has a send time and its latency counts from then, so a server that falls behind shows it
(no coordinated omission). The server's CPU time (all its processes) is read from /proc.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script (as documented): make `benchmarks` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.reports import DRIFT_RULE, RULES  # one rule table for every benchmark

REPO = Path(__file__).resolve().parents[1]
PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
SECRET = "bench-enroll-" + secrets.token_urlsafe(16)
ADMIN = "bench-admin-" + secrets.token_urlsafe(16)
OWNER = "platform-team"
HELLO_APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

async def hello(request):
    return PlainTextResponse("hello")

app = Starlette(routes=[Route("/hello", hello)])
"""


# --- reports ---------------------------------------------------------------------------------


def report_body(workspace_id: str, drifted: bool = False, error: bool = False) -> bytes:
    """One report of `workspace_id` as the agent sends it (fresh report id, current time); a
    drifted one has the chat setting changed by hand, an error one could not read a file."""
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    rules = [
        {
            "rule_id": rule_id,
            "target": target,
            "state": "compliant",
            "before": None,
            "after": None,
            "message": None,
        }
        for rule_id, target in RULES
    ]
    if drifted:
        rules[DRIFT_RULE].update(state="drift", before="false", after="true")
    if error:
        rules[5].update(state="error", message="cannot read opencode.json: permission denied")
    return json.dumps(
        {
            "wire_version": 1,
            "report_id": uuid.uuid4().hex,
            "kind": "check" if drifted else "heartbeat",
            "workspace": {"id": workspace_id, "name": workspace_id, "owner": OWNER},
            "agent_version": "0.1.0",
            "desired_sha256": "a" * 64,
            "prompt_sha256": "b" * 64,
            "enforcement_level": "standard",
            "key_enforcement_level": "standard",
            "key_source": "provisioner",
            "identity_mode": "enrollment-secret",
            "exit_code": (2 if drifted else 0) | (4 if error else 0),
            "started_at": now,
            "finished_at": now,
            "rules": rules,
            "notes": [],
        }
    ).encode()


# --- a tiny HTTP/1.1 client (keep-alive; cheaper than httpx, so the server is the limit) ------


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Conn:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, body: bytes = b"", bearer: str | None = None
    ) -> tuple[int, bytes]:
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        if bearer:
            head += f"Authorization: Bearer {bearer}\r\n"
        self.writer.write(head.encode() + b"\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length = 0
        chunked = False
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
                chunked = True
        if chunked:
            data = b""
            while True:
                size = int((await self.reader.readline()).strip(), 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    break
                data += chunk[:-2]
            return status, data
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


# --- processes -------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User+system CPU of `pid` and its live children (uvicorn workers), from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


@dataclass
class Proc:
    popen: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        self.popen.send_signal(signal.SIGINT)
        try:
            self.popen.wait(20)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()


def wait_up(proc: Proc, path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.popen.poll() is not None:
            raise SystemExit(f"server exited:\n{proc.log.read_text()[-3000:]}")
        try:
            with socket.create_connection(("127.0.0.1", proc.port), timeout=1) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"server did not come up:\n{proc.log.read_text()[-3000:]}")


def start_drift(
    db_url: str, workdir: Path, workers: int, extra: list[str], settings: dict[str, str]
) -> Proc:
    port = free_port()
    log = workdir / f"server-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFT_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "server")]),
        DRIFT_ENROLLMENT_SECRET=SECRET,
        DRIFT_ADMIN_TOKENS=ADMIN,
        # the load generator enrolls its whole fleet from one address
        DRIFT_ENROLL_RATE_LIMIT="1000000",
    )
    env.update(settings)
    args = [sys.executable, "-m", "workspace_agent_server", "--db", db_url, "--port", str(port)]
    args += ["--log-level", "warning", *extra]
    if workers > 1:
        args += ["--workers", str(workers)]
    with log.open("wb") as out:
        popen = subprocess.Popen(args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    proc = Proc(popen, port, log)
    wait_up(proc, "/health")
    return proc


def start_hello(workdir: Path, workers: int) -> Proc:
    (workdir / "hello_app.py").write_text(HELLO_APP)
    port = free_port()
    log = workdir / "hello.log"
    args = [sys.executable, "-m", "uvicorn", "hello_app:app", "--port", str(port)]
    args += ["--log-level", "warning", "--no-access-log", "--no-server-header"]
    if workers > 1:
        args += ["--workers", str(workers)]
    with log.open("wb") as out:
        popen = subprocess.Popen(args, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    proc = Proc(popen, port, log)
    wait_up(proc, "/hello")
    return proc


# --- phases ----------------------------------------------------------------------------------


async def enroll(port: int, count: int, concurrency: int = 16) -> list[tuple[str, str]]:
    """Enroll `count` workspaces; returns (workspace id, token) pairs."""
    run = uuid.uuid4().hex[:6]
    ids = [f"ws-{run}-{i:06d}" for i in range(count)]
    out: list[tuple[str, str]] = []

    async def worker(part: list[str]) -> None:
        conn = await Conn.open(port)
        for ws in part:
            body = json.dumps(
                {"workspace": {"id": ws, "name": ws, "owner": OWNER}, "agent_version": "0.1.0"}
            ).encode()
            status, data = await conn.request("POST", "/api/v1/enroll", body, SECRET)
            if status != 200:
                raise SystemExit(f"enroll failed: {status} {data[:300]!r}")
            out.append((ws, json.loads(data)["workspace_token"]))
        conn.close()

    await asyncio.gather(*(worker(ids[i::concurrency]) for i in range(concurrency)))
    return out


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)] * 1000, 2)

    return {
        "p50_ms": rank(50),
        "p90_ms": rank(90),
        "p99_ms": rank(99),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


async def fixed_rate(
    port: int, tokens: list[tuple[str, str]], rate: float, duration: float, conns: int = 64
) -> dict[str, Any]:
    """Open loop at `rate` reports/s for `duration` s; latency from each request's send time."""
    n = int(rate * duration)
    queue: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()
    latencies: list[float] = []
    windows: dict[int, list[float]] = {}
    errors: dict[str, int] = {}
    start = time.perf_counter() + 0.2

    async def worker() -> None:
        conn = await Conn.open(port)
        while (item := await queue.get()) is not None:
            due, i = item
            ws, token = tokens[i % len(tokens)]
            body = report_body(ws, drifted=(i % 50 == 0))
            try:
                status, data = await conn.request("POST", "/api/v1/reports", body, token)
            except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                conn = await Conn.open(port)
                continue
            took = time.perf_counter() - due
            if status != 200 or b'"duplicate":false' not in data.replace(b" ", b""):
                errors[str(status)] = errors.get(str(status), 0) + 1
            else:
                latencies.append(took)
                windows.setdefault(int(due - start) // 10, []).append(took)
        conn.close()

    tasks = [asyncio.create_task(worker()) for _ in range(conns)]
    behind = 0.0
    for i in range(n):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            behind = max(behind, -delay)
        queue.put_nowait((due, i))
    for _ in tasks:
        queue.put_nowait(None)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    return {
        "offered_rps": rate,
        "sent": n,
        "ok": len(latencies),
        "errors": errors,
        "achieved_rps": round(len(latencies) / elapsed, 1),
        "sender_behind_ms": round(behind * 1000, 1),
        **percentiles(latencies),
        "p99_by_10s_ms": [percentiles(windows[k])["p99_ms"] for k in sorted(windows)],
    }


WRK_LUA = """
local tokens = {%(tokens)s}
local ids = {%(ids)s}
local parts = {%(parts)s}
local counter = 0
local tag = ""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  tag = args[1] .. "-" .. tostring(math.random(1, 1000000000))
end

function request()
  counter = counter + 1
  local i = (counter %% #tokens) + 1
  local values = {RID = tag .. "x" .. counter, WSID = ids[i],
                  STAMP = os.date("!%%Y-%%m-%%dT%%H:%%M:%%SZ")}
  local out = {}
  for k = 1, #parts do
    out[k] = values[parts[k]] or parts[k]
  end
  return wrk.format("POST", "/api/v1/reports",
    {["Authorization"] = "Bearer " .. tokens[i], ["Content-Type"] = "application/json"},
    table.concat(out))
end

bad = 0
function response(status, headers, body)
  if status ~= 200 or not string.find(body, '"duplicate":false', 1, true) then
    bad = bad + 1
    if bad < 3 then io.stderr:write("bad response " .. status .. " " .. body .. "\\n") end
  end
end

function done(summary, latency, requests)
  local total = 0
  for _, t in ipairs(threads) do total = total + t:get("bad") end
  io.write("Bad responses: " .. total .. "\\n")
end
"""


def _lua(text: str) -> str:
    return "[==[" + text + "]==]"


def wrk_script(workdir: Path, tokens: list[tuple[str, str]]) -> Path:
    """A Lua script for wrk: each request a fresh report id, the current time, round robin over
    the workspaces (with each one's own token)."""
    import re

    template = report_body("WSID").decode()
    fields = json.loads(template)
    template = template.replace(fields["report_id"], "RID").replace(fields["finished_at"], "STAMP")
    parts = [part for part in re.split(r"(RID|WSID|STAMP)", template) if part]
    path = workdir / "ingest.lua"
    path.write_text(
        WRK_LUA
        % {
            "tokens": ",".join(_lua(t) for _, t in tokens),
            "ids": ",".join(_lua(w) for w, _ in tokens),
            "parts": ",".join(_lua(part) for part in parts),
        }
    )
    return path


def _ms(text: str) -> float:
    for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return float(text)


def run_wrk(
    port: int, path: str, conns: int, duration: float, script: Path | None, tag: str = "r"
) -> dict[str, Any]:
    args = ["wrk", "-t1", f"-c{conns}", f"-d{int(duration)}s", "--latency", "--timeout", "10s"]
    if script is not None:
        args += ["-s", str(script)]
    args += [f"http://127.0.0.1:{port}{path}"]
    if script is not None:
        args += ["--", tag]
    done = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, check=False)
    out = done.stdout
    result: dict[str, Any] = {"conns": conns}
    for line in out.splitlines():
        parts = line.split()
        if " requests in " in line:
            result["requests"] = int(parts[0])
        elif line.startswith("Requests/sec:"):
            result["rps"] = float(parts[1])
        elif parts[:1] in (["50%"], ["99%"]):
            result[f"p{parts[0][:-1]}_ms"] = round(_ms(parts[1]), 2)
        elif line.startswith("Bad responses:"):
            result["bad"] = int(parts[-1])
        elif "Non-2xx" in line:
            result["non_2xx"] = int(parts[-1])
        elif line.strip().startswith("Socket errors"):
            result["socket_errors"] = line.strip()
    if done.stderr.strip():
        result["stderr"] = done.stderr.strip()[:500]
    return result


def measured(proc: Proc, fn: Any, *args: Any) -> dict[str, Any]:
    """Run fn, adding the server's CPU seconds and the load average around it."""
    cpu0, load0 = cpu_seconds(proc.popen.pid), os.getloadavg()[0]
    t0 = time.perf_counter()
    result: dict[str, Any] = fn(*args)
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(proc.popen.pid) - cpu0
    result["server_cpu_s"] = round(cpu, 2)
    result["server_cores"] = round(cpu / wall, 2)
    done = result.get("requests") or result.get("ok")
    if done:
        result["server_cpu_us_per_req"] = round(cpu / done * 1e6)
    result["load_before_after"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    return result


# --- a fleet of 50,000 ---------------------------------------------------------------------


def seed_fleet(db_url: str, n: int) -> list[tuple[str, str]]:
    """`n` enrolled workspaces with one report each, written straight into the database (through
    the API it would take minutes): 4% drifted, 2% with an error, 3% silent for an hour (stale).
    Returns (workspace id, token) pairs."""
    from datetime import timedelta

    from workspace_agent_server import auth, queries
    from workspace_agent_server.db import make_engine, migrate, write_tx

    from workspace_agent import wire

    engine = make_engine(db_url)
    migrate(engine)
    now = datetime.now(UTC)
    tokens = [(f"ws-{i:06d}", auth.new_workspace_token()) for i in range(n)]
    try:
        with write_tx(engine) as conn:
            for ws, token in tokens:
                who = wire.WorkspaceIdentity(id=ws, name=ws, owner=OWNER)
                queries.enroll(conn, who, "0.1.0", auth.token_hash(token), now)
        for start in range(0, n, 500):
            items = []
            for i in range(start, min(n, start + 500)):
                ws = tokens[i][0]
                body = report_body(ws, drifted=i % 25 == 0, error=i % 50 == 1)
                received = now - timedelta(hours=1) if i % 33 == 2 else now
                items.append(
                    queries.IngestItem(ws, wire.Report.model_validate_json(body), received)
                )
            with write_tx(engine) as conn:
                queries.ingest_many(conn, items)
    finally:
        engine.dispose()
    return tokens


FLEET_PATHS = (
    "/api/v1/workspaces?limit=200",
    "/api/v1/workspaces?status=drifted&limit=200",
    "/api/v1/workspaces?q=ws-0123&limit=200",
    "/api/v1/workspaces?offset=25000&limit=200",
    "/",
    "/?status=stale",
    "/workspaces/ws-000025",
    "/metrics",
)


async def time_gets(port: int, paths: tuple[str, ...], rounds: int) -> dict[str, Any]:
    """Latency of admin pages and API calls, one at a time (what one admin waits for)."""
    out: dict[str, Any] = {}
    conn = await Conn.open(port)
    try:
        for path in paths:
            took: list[float] = []
            for _ in range(rounds):
                t0 = time.perf_counter()
                status, body = await conn.request("GET", path, bearer=ADMIN)
                took.append(time.perf_counter() - t0)
                if status != 200:
                    raise SystemExit(f"GET {path}: {status} {body[:200]!r}")
            out[path] = {**percentiles(took), "bytes": len(body)}
    finally:
        conn.close()
    return out


async def metric(port: int, name: str) -> float | None:
    """One value from /metrics (None: this server does not have it)."""
    conn = await Conn.open(port)
    try:
        _, body = await conn.request("GET", "/metrics", bearer=ADMIN)
    finally:
        conn.close()
    for line in body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


async def heartbeats(
    port: int, tokens: list[tuple[str, str]], rate: float, duration: float
) -> dict[str, Any]:
    """The fleet's steady state: `rate` reports/s, each from the next workspace (so each one
    reports once per len(tokens)/rate seconds), while an admin reloads the fleet page every 2 s;
    the writer's queue is sampled every second (a backlog would grow)."""
    queue: list[float | None] = []
    page: list[float] = []
    done = asyncio.Event()

    async def sample() -> None:
        conn = await Conn.open(port)
        try:
            while not done.is_set():
                queue.append(await metric(port, "drift_ingest_queue"))
                if len(queue) % 2 == 0:
                    t0 = time.perf_counter()
                    await conn.request("GET", "/api/v1/workspaces?limit=200", bearer=ADMIN)
                    page.append(time.perf_counter() - t0)
                await asyncio.sleep(1)
        finally:
            conn.close()

    sampler = asyncio.create_task(sample())
    try:
        result = await fixed_rate(port, tokens, rate, duration)
    finally:
        done.set()
        await sampler
    result["writer_queue_max"] = max((q for q in queue if q is not None), default=None)
    result["writer_queue_by_s"] = queue
    result["fleet_page_during"] = percentiles(page)
    return result


def run_fleet(args: argparse.Namespace, db_url: str, workdir: Path) -> dict[str, Any]:
    t0 = time.perf_counter()
    tokens = seed_fleet(db_url, args.fleet)
    out: dict[str, Any] = {"workspaces": args.fleet, "seed_s": round(time.perf_counter() - t0, 1)}
    server = start_drift(db_url, workdir, args.workers, args.server_arg, server_env(args))
    try:
        out["pages_idle"] = asyncio.run(time_gets(server.port, FLEET_PATHS, 10))
        out["heartbeat"] = measured(
            server,
            lambda: asyncio.run(
                heartbeats(server.port, tokens, args.heartbeat_rate, args.heartbeat_duration)
            ),
        )
    finally:
        server.stop()
    return out


# --- main ------------------------------------------------------------------------------------


def server_env(args: argparse.Namespace) -> dict[str, str]:
    """--env NAME=VALUE options: server settings (e.g. DRIFT_SQLITE_SYNCHRONOUS=full)."""
    pairs = [item.partition("=") for item in args.env]
    return {name: value for name, _, value in pairs}


def run_load(
    args: argparse.Namespace, db_url: str, workdir: Path, conns: list[int], results: dict[str, Any]
) -> None:
    """Hello ceiling, then the drift server: enroll, warm up, wrk at each connection count, then
    the fixed rates."""
    if not args.skip_hello:
        hello = start_hello(workdir, args.workers)
        try:
            results["hello"] = [
                measured(hello, run_wrk, hello.port, "/hello", c, args.duration, None)
                for c in conns
            ]
        finally:
            hello.stop()
    server = start_drift(db_url, workdir, args.workers, args.server_arg, server_env(args))
    try:
        t0 = time.perf_counter()
        tokens = asyncio.run(enroll(server.port, args.workspaces))
        results["enroll_rps"] = round(len(tokens) / (time.perf_counter() - t0), 1)
        script = wrk_script(workdir, tokens)
        # A short warm-up, so that every workspace has its rules stored (steady state).
        run_wrk(server.port, "/", 8, max(2.0, args.workspaces / 500), script, "warm")
        results["ingest"] = [
            measured(server, run_wrk, server.port, "/", c, args.duration, script, f"c{c}")
            for c in conns
        ]
        results["rate"] = [
            measured(
                server,
                lambda r: asyncio.run(fixed_rate(server.port, tokens, r, args.duration)),
                float(r),
            )
            for r in args.rates.split(",")
            if r
        ]
        results["batches"] = {
            "batches": asyncio.run(metric(server.port, "drift_ingest_batches_total")),
            "reports": asyncio.run(metric(server.port, "drift_ingest_batch_reports_total")),
        }
    finally:
        server.stop()
    if results.get("hello") and results.get("ingest"):
        best_hello = max(h.get("rps", 0) for h in results["hello"])
        best_ingest = max(i.get("rps", 0) for i in results["ingest"])
        results["ingest_vs_hello"] = round(best_ingest / best_hello, 3) if best_hello else None


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--workspaces", type=int, default=1000)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per wrk/rate run")
    p.add_argument("--conns", default="8,32", help="wrk connection counts")
    p.add_argument("--rates", default="300", help="fixed offered rates (reports/s)")
    p.add_argument("--skip-hello", action="store_true")
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--server-arg", action="append", default=[], help="extra server flag")
    p.add_argument("--env", action="append", default=[], help="a server setting, NAME=VALUE")
    p.add_argument(
        "--fleet",
        type=int,
        default=0,
        help="instead: seed this many workspaces, time the fleet pages, then heartbeats",
    )
    p.add_argument(
        "--replicas",
        default="",
        help="instead: this many server processes on one database, e.g. 1,2,3 (replicas_load.py)",
    )
    p.add_argument(
        "--pg-connection-limit",
        type=int,
        default=None,
        help="with --replicas on postgres: the database's CONNECTION LIMIT",
    )
    p.add_argument("--heartbeat-rate", type=float, default=round(50_000 / 300, 1))
    p.add_argument("--heartbeat-duration", type=float, default=60.0)
    args = p.parse_args()
    if shutil.which("wrk") is None and not args.fleet:
        raise SystemExit("this needs wrk (apt-get install wrk)")
    workdir = Path(tempfile.mkdtemp(prefix="drift-load-"))
    schema = None
    if args.replicas:
        from benchmarks.replicas_load import run_replicas

        results = {"db": args.db, "workers": args.workers, "server_settings": args.env,
                   "workspaces": args.workspaces, "cpus": os.cpu_count(),
                   "started": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        try:
            run_replicas(args, workdir, [int(c) for c in args.conns.split(",") if c], results)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        text = json.dumps(results, indent=1)
        print(text)
        if args.json:
            args.json.write_text(text + "\n")
        return 0
    if args.db == "sqlite":
        db_url = f"sqlite:///{workdir / 'drift.db'}"
    else:
        import sqlalchemy as sa

        schema = "drift_bench_" + uuid.uuid4().hex[:8]
        with sa.create_engine(PG_URL).begin() as conn:
            conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
        db_url = f"{PG_URL}?options=-csearch_path%3D{schema}"
    results: dict[str, Any] = {
        "db": args.db,
        "workers": args.workers,
        "server_settings": args.env + args.server_arg,
        "workspaces": args.fleet or args.workspaces,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
    }
    try:
        if args.fleet:
            results["fleet"] = run_fleet(args, db_url, workdir)
        else:
            conns = [int(c) for c in args.conns.split(",") if c]
            run_load(args, db_url, workdir, conns, results)
    finally:
        if schema is not None:
            import sqlalchemy as sa

            with sa.create_engine(PG_URL).begin() as conn:
                conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        shutil.rmtree(workdir, ignore_errors=True)
    text = json.dumps(results, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
