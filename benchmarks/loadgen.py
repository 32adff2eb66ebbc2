"""The load generator: a separate process (asyncio, benchmarks/http1.py) so its CPU is not the server's.

    python -m benchmarks.loadgen enroll --url U --secret S --count N --tokens-out F
    python -m benchmarks.loadgen rate   --url U --tokens F --rate R --duration D   # open loop
    python -m benchmarks.loadgen closed --url U --tokens F --concurrency C --duration D
    python -m benchmarks.loadgen get    --url U --path P --bearer T --count N

Every mode is bounded in count and time and prints one JSON object. In the open-loop mode each
request has a scheduled send time and its latency is counted from then, so a server that falls
behind shows it in the latency (no coordinated omission), and `behind_s` says how late the
sender itself was.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import reports
from benchmarks.http1 import HttpError, Pool

MAX_IN_FLIGHT = 5000  # past this an open-loop request is counted as not sent (overload)


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max in milliseconds (nearest rank)."""
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None, "max_ms": None}
    ordered = sorted(values)

    def rank(p: float) -> float:
        index = max(0, min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1))
        return round(ordered[index] * 1000, 2)

    return {"p50_ms": rank(50), "p90_ms": rank(90), "p99_ms": rank(99), "max_ms": round(ordered[-1] * 1000, 2)}


class Tally:
    """Latencies of successful requests and the count of every failure kind."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.failures: Counter[str] = Counter()

    def ok(self, latency: float) -> None:
        self.latencies.append(latency)

    def fail(self, kind: str) -> None:
        self.failures[kind] += 1

    def summary(self, elapsed: float) -> dict[str, Any]:
        done = len(self.latencies)
        return {"ok": done, "errors": sum(self.failures.values()), "error_kinds": dict(self.failures),
                "elapsed_s": round(elapsed, 3), "throughput_rps": round(done / elapsed, 1) if elapsed else 0.0,
                **percentiles(self.latencies)}


async def _post(pool: Pool, path: str, body: bytes, bearer: str, tally: Tally, started: float,
                expect: tuple[int, ...] = (200, 201, 202)) -> bytes | None:
    """POST once; counts a success (latency from `started`) or the kind of failure."""
    try:
        status, data = await pool.request("POST", path, body, {"Authorization": f"Bearer {bearer}",
                                                               "Content-Type": "application/json"})
    except HttpError as exc:
        tally.fail(str(exc).split(":")[0])
        return None
    if status in expect:
        tally.ok(time.perf_counter() - started)
        return data
    tally.fail(f"HTTP {status}")
    return None


async def enroll(url: str, secret: str, count: int, concurrency: int, prefix: str, start: int,
                 deadline_s: float) -> tuple[dict[str, str], dict[str, Any]]:
    """Enroll `count` workspaces; returns {workspace id: token} and the tally."""
    tokens: dict[str, str] = {}
    tally = Tally()
    queue = iter(range(start, start + count))
    t0 = time.perf_counter()
    end = t0 + deadline_s

    async def worker() -> None:
        for index in queue:
            if time.perf_counter() > end:
                tally.fail("deadline")
                return
            wid = reports.workspace_id(index, prefix)
            began = time.perf_counter()
            data = await _post(pool, "/api/v1/enroll", reports.enroll_body(wid), secret, tally, began)
            if data is not None:
                tokens[wid] = json.loads(data)["workspace_token"]

    async with Pool(url, concurrency, 30.0) as pool:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return tokens, tally.summary(time.perf_counter() - t0)


async def open_loop(url: str, tokens: dict[str, str], rate: float, duration: float, drift_every: int,
                    connections: int) -> dict[str, Any]:
    """Send reports at a fixed offered rate for `duration` seconds, round robin over workspaces."""
    tally = Tally()
    ids = list(tokens)
    total = int(rate * duration)
    behind = 0.0
    tasks: set[asyncio.Task[Any]] = set()
    # Requests beyond the open connections wait in the pool's FIFO; the wait counts, since
    # latency is measured from `scheduled`.
    async with Pool(url, connections, 10.0) as pool:
        t0 = time.perf_counter()
        for i in range(total):
            scheduled = t0 + i / rate
            pause = scheduled - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            else:
                behind = max(behind, -pause)
            if len(tasks) >= MAX_IN_FLIGHT:
                tally.fail("overload: too many in flight")
                continue
            wid = ids[i % len(ids)]
            body = reports.body(wid, drifted=bool(drift_every) and i % drift_every == 0)
            task = asyncio.create_task(_post(pool, "/api/v1/reports", body, tokens[wid], tally, scheduled))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        elapsed = time.perf_counter() - t0
    out = tally.summary(elapsed)
    out.update(offered_rps=rate, sent=total, behind_s=round(behind, 3))
    return out


async def closed_loop(url: str, path: str, tokens: dict[str, str] | None, concurrency: int,
                      duration: float) -> dict[str, Any]:
    """`concurrency` workers send back to back for `duration` seconds (max throughput)."""
    tally = Tally()
    ids = list(tokens or {})
    counter = iter(range(10**9))
    async with Pool(url, concurrency, 10.0) as pool:
        t0 = time.perf_counter()
        end = t0 + duration

        async def worker() -> None:
            while time.perf_counter() < end:
                i = next(counter)
                began = time.perf_counter()
                if ids:
                    wid = ids[i % len(ids)]
                    await _post(pool, path, reports.body(wid), (tokens or {})[wid], tally, began)
                else:
                    await _post(pool, path, b'{"hello":"world"}', "none", tally, began)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    return tally.summary(elapsed)


async def gets(url: str, path: str, bearer: str, count: int) -> dict[str, Any]:
    """`count` GETs one after another (a person opening a page): latency and size."""
    tally = Tally()
    size = 0
    async with Pool(url, 1, 60.0) as pool:
        t0 = time.perf_counter()
        for _ in range(count):
            began = time.perf_counter()
            try:
                status, data = await pool.request("GET", path, headers={"Authorization": f"Bearer {bearer}"})
            except HttpError as exc:
                tally.fail(str(exc).split(":")[0])
                continue
            if status == 200:
                tally.ok(time.perf_counter() - began)
                size = len(data)
            else:
                tally.fail(f"HTTP {status}")
        out = tally.summary(time.perf_counter() - t0)
    out["bytes"] = size
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.loadgen")
    sub = parser.add_subparsers(dest="mode", required=True)
    e = sub.add_parser("enroll")
    e.add_argument("--secret", required=True)
    e.add_argument("--count", type=int, required=True)
    e.add_argument("--start", type=int, default=0)
    e.add_argument("--prefix", default="bench")
    e.add_argument("--concurrency", type=int, default=16)
    e.add_argument("--deadline", type=float, default=600.0)
    e.add_argument("--tokens-out", type=Path, required=True)
    r = sub.add_parser("rate")
    r.add_argument("--tokens", type=Path, required=True)
    r.add_argument("--rate", type=float, required=True)
    r.add_argument("--duration", type=float, required=True)
    r.add_argument("--drift-every", type=int, default=20, help="every n-th report has a drifted rule (0: none)")
    r.add_argument("--connections", type=int, default=64)
    c = sub.add_parser("closed")
    c.add_argument("--path", default="/api/v1/reports")
    c.add_argument("--tokens", type=Path)
    c.add_argument("--concurrency", type=int, default=32)
    c.add_argument("--duration", type=float, required=True)
    g = sub.add_parser("get")
    g.add_argument("--path", required=True)
    g.add_argument("--bearer", required=True)
    g.add_argument("--count", type=int, default=20)
    for p in (e, r, c, g):
        p.add_argument("--url", required=True)
    args = parser.parse_args(argv)
    if args.mode == "enroll":
        tokens, out = asyncio.run(enroll(args.url, args.secret, args.count, args.concurrency, args.prefix,
                                         args.start, args.deadline))
        args.tokens_out.write_text(json.dumps(tokens))
    elif args.mode == "rate":
        out = asyncio.run(open_loop(args.url, json.loads(args.tokens.read_text()), args.rate, args.duration,
                                    args.drift_every, args.connections))
    elif args.mode == "closed":
        tokens = json.loads(args.tokens.read_text()) if args.tokens else None
        out = asyncio.run(closed_loop(args.url, args.path, tokens, args.concurrency, args.duration))
    else:
        out = asyncio.run(gets(args.url, args.path, args.bearer, args.count))
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
