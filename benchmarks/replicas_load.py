"""The replicas axis of benchmarks/ingest_load.py (`--replicas 1,2,3`): N drift server processes
on one database, the load spread evenly (one wrk per replica, the connections divided), then a
burst of admin and report requests on every replica at once, counted by HTTP status (a database
out of connections must answer 503, never 500). Loopback only, bounded in count and time.

PostgreSQL runs get a database of their own (`replicas_bench_<hex>`, dropped afterwards); with
`--pg-connection-limit N` it has `CONNECTION LIMIT N`, a stand-in for a server whose
`max_connections` is N that leaves the shared server's own limit to others.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from benchmarks.ingest_load import (
    ADMIN,
    Conn,
    Proc,
    cpu_seconds,
    enroll,
    report_body,
    run_wrk,
    server_env,
    start_drift,
    wrk_script,
)

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
BURST_PER_REPLICA = 120  # requests in the status burst, per replica
BURST_CONCURRENCY = 24  # connections per replica during the burst


@contextmanager
def fresh_db(kind: str, workdir: Path, tag: str, connection_limit: int | None) -> Iterator[str]:
    """A new database. With `connection_limit`, it belongs to a new role that is no superuser
    (PostgreSQL does not hold superusers to a database's CONNECTION LIMIT), and the servers log
    in as that role."""
    if kind == "sqlite":
        yield f"sqlite:///{workdir / f'replicas-{tag}.db'}"
        return
    import sqlalchemy as sa

    name = f"replicas_bench_{uuid.uuid4().hex[:8]}"
    user = "postgres"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if connection_limit:
            user = name
            conn.exec_driver_sql(f'CREATE ROLE "{user}" LOGIN')
            conn.exec_driver_sql(
                f'CREATE DATABASE "{name}" OWNER "{user}" CONNECTION LIMIT {connection_limit}'
            )
        else:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if user != "postgres":
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{user}"')
        admin.dispose()


def spread_wrk(
    servers: list[Proc], conns: int, duration: float, script: Path, tag: str
) -> dict[str, Any]:
    """One wrk per replica at the same time, `conns` connections in all."""
    n = len(servers)
    per = [conns // n + (1 if i < conns % n else 0) for i in range(n)]
    cpu0 = sum(cpu_seconds(s.popen.pid) for s in servers)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    def one(server: Proc, c: int) -> dict[str, Any]:
        return run_wrk(server.port, "/", max(c, 1), duration, script, f"{tag}-{server.port}")

    with ThreadPoolExecutor(n) as pool:
        parts = list(pool.map(one, servers, per))
    wall = time.perf_counter() - t0
    cpu = sum(cpu_seconds(s.popen.pid) for s in servers) - cpu0
    requests = sum(p.get("requests", 0) for p in parts)
    return {
        "conns": conns,
        "rps": round(sum(p.get("rps", 0.0) for p in parts), 1),
        "requests": requests,
        "p50_ms_max": max((p.get("p50_ms") or 0) for p in parts),
        "p99_ms_max": max((p.get("p99_ms") or 0) for p in parts),
        "bad": sum(p.get("bad", 0) for p in parts),
        "non_2xx": sum(p.get("non_2xx", 0) for p in parts),
        "socket_errors": [p["socket_errors"] for p in parts if "socket_errors" in p],
        "server_cores": round(cpu / wall, 2),
        "server_cpu_us_per_req": round(cpu / requests * 1e6) if requests else None,
        "load_before_after": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


async def burst(servers: list[Proc], tokens: list[tuple[str, str]]) -> dict[str, Any]:
    """Admin fleet reads and reports on every replica at once; answers counted by status."""
    statuses: Counter[str] = Counter()
    retry_after: Counter[str] = Counter()

    async def worker(server: Proc, n: int, k: int) -> None:
        conn = await Conn.open(server.port)
        try:
            for i in range(n):
                if (i + k) % 2:
                    status, body = await conn.request(
                        "GET", "/api/v1/workspaces?limit=200", bearer=ADMIN
                    )
                    kind = "admin"
                else:
                    ws, token = tokens[(i * 7 + k) % len(tokens)]
                    status, body = await conn.request(
                        "POST", "/api/v1/reports", report_body(ws), token
                    )
                    kind = "report"
                statuses[f"{kind} {status}"] += 1
                if status == 503:
                    retry_after[str(b'"reason":"busy"' in body.replace(b" ", b""))] += 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError) as exc:
            statuses[type(exc).__name__] += 1
        finally:
            conn.close()

    per_conn = BURST_PER_REPLICA // BURST_CONCURRENCY
    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            worker(server, per_conn, k)
            for server in servers
            for k in range(BURST_CONCURRENCY)
        )
    )
    return {
        "requests": sum(statuses.values()),
        "seconds": round(time.perf_counter() - t0, 2),
        "statuses": dict(sorted(statuses.items())),
        "busy_503_with_reason": dict(retry_after),
    }


def run_replicas(
    args: argparse.Namespace, workdir: Path, conns: list[int], results: dict[str, Any]
) -> None:
    counts = [int(n) for n in str(args.replicas).split(",") if n]
    results["pg_connection_limit"] = args.pg_connection_limit
    results["replicas"] = {}
    for n in counts:
        with fresh_db(args.db, workdir, str(n), args.pg_connection_limit) as db_url:
            servers: list[Proc] = []
            try:
                for _ in range(n):
                    servers.append(
                        start_drift(
                            db_url, workdir, args.workers, args.server_arg, server_env(args)
                        )
                    )
                tokens = asyncio.run(enroll(servers[0].port, args.workspaces))
                script = wrk_script(workdir, tokens)
                run_wrk(servers[0].port, "/", 8, max(2.0, args.workspaces / 500), script, "warm")
                out: dict[str, Any] = {
                    "ingest": [
                        spread_wrk(servers, c, args.duration, script, f"r{n}c{c}") for c in conns
                    ]
                }
                out["burst"] = asyncio.run(burst(servers, tokens))
                results["replicas"][str(n)] = out
            finally:
                for server in servers:
                    server.stop()
