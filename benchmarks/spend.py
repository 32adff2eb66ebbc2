"""The spend pages with a big fleet: N keys × D days × M model groups of spend rows, written
straight into a fresh drift database (what a month of pulls leaves), then the real server
process serves the spend page, API and CSV one request at a time. Bounded in rows and time.

    PYTHONPATH=$PWD:$PWD/server python -m benchmarks.spend --keys 50000 --days 30 --models 2 \
        [--db postgresql] [--requests 10]

The first request of a period after a pull adds up the period's rows (cold); the next ones are
folded from the per-process cache (warm): both are reported. 2% of the workspaces are drifted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.drift import Credentials, drift_server, pg_schema, python_path
from benchmarks.loadgen import gets

MODELS = ("claude-sonnet", "claude-haiku", "claude-opus", "claude-sonnet-4-5")
TEMPLATES = ("python-dev", "go-dev", "data-science", "frontend", "platform")
CHUNK = 20_000


def seed(db_url: str, keys: int, days: int, models: int, today: date) -> dict[str, Any]:
    """Fill the spend tables (and the workspaces they belong to) of a migrated database."""
    sys.path[:0] = [p for p in python_path().split(":") if p not in sys.path]
    from workspace_agent_server import db

    engine = db.make_engine(db_url)
    db.migrate(engine)
    rng = random.Random(18)
    now = datetime.now(UTC)
    started = time.perf_counter()
    key_rows, ws_rows, daily = [], [], 0
    for i in range(keys):
        ws = f"ws-{i:06d}"
        owner = f"user{i % (keys // 3 or 1):05d}"
        key_rows.append({
            "token": f"{i:064x}", "key_alias": f"workspace-{ws}", "key_name": f"sk-...{i % 10000:04d}",
            "workspace_id": ws, "workspace_name": f"{owner}-{TEMPLATES[i % 5]}", "owner": owner,
            "template_name": TEMPLATES[i % 5], "level": "standard", "generation": 0,
            "spend": round(rng.uniform(0, 12), 6), "max_budget": 10.0, "budget_duration": "30d",
            "budget_reset_at": now + timedelta(days=rng.randint(1, 30)),
            "created_at": now - timedelta(days=days + rng.randint(0, 60)), "blocked": False,
            # 5% of the keys have been idle for three weeks or more
            "last_spend_at": now - timedelta(days=21 if i % 20 == 0 else rng.randint(0, 2)),
            "seen_at": now,
        })
        ws_rows.append({
            "id": ws, "name": f"{owner}-{TEMPLATES[i % 5]}", "owner": owner, "agent_version": "0.1.0",
            "enrolled_at": now - timedelta(days=40), "last_seen_at": now,
            "state": "drifted" if i % 50 == 0 else "compliant", "rules_total": 14,
            "rules_failing": 1 if i % 50 == 0 else 0, "rules_corrected": 0, "notes": "[]",
            "stale_notified": False,
        })
    with engine.begin() as conn:
        for i in range(0, keys, CHUNK):
            conn.execute(db.spend_keys.insert(), key_rows[i : i + CHUNK])
            conn.execute(db.workspaces.insert(), ws_rows[i : i + CHUNK])
    for d in range(days):
        day = today - timedelta(days=d)
        rows = [
            {"token": f"{i:064x}", "day": day, "model_group": MODELS[(i + m) % len(MODELS)],
             "spend": round(rng.uniform(0.001, 0.5), 6), "requests": rng.randint(1, 40),
             "prompt_tokens": 1000, "completion_tokens": 200,
             "last_at": datetime(day.year, day.month, day.day, 12, tzinfo=UTC)}
            for i in range(keys) for m in range(models)
        ]
        with engine.begin() as conn:
            for i in range(0, len(rows), CHUNK):
                conn.execute(db.spend_daily.insert(), rows[i : i + CHUNK])
        daily += len(rows)
    with engine.begin() as conn:
        conn.execute(db.spend_pull.insert().values(
            id="litellm", generation=1, ok_at=now, started_at=now, keys=keys, log_rows=daily,
            synced_through=today, keys_at=now,
        ))
        if engine.dialect.name == "postgresql":
            conn.exec_driver_sql("ANALYZE")
    if engine.dialect.name == "sqlite":
        with engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE")
    engine.dispose()
    return {"keys": keys, "daily_rows": daily, "seed_s": round(time.perf_counter() - started, 1)}


PAGES = (
    ("spend page, 30 days by workspace", "/spend?preset=30d"),
    ("API 30 days by workspace", "/api/v1/spend?preset=30d&limit=500"),
    ("API 30 days by owner", "/api/v1/spend?preset=30d&group=owner"),
    ("API 30 days by template", "/api/v1/spend?preset=30d&group=template"),
    ("API 30 days by tier", "/api/v1/spend?preset=30d&group=tier"),
    ("API 7 days by model", "/api/v1/spend?preset=7d&group=model"),
    ("API budgets, first 500", "/api/v1/spend/budgets"),
    ("API idle 14 days, first 500", "/api/v1/spend/inactive?days=14"),
    ("CSV 30 days by workspace (all rows)", "/api/v1/spend/export.csv?view=groups&preset=30d"),
    ("CSV budgets (all keys)", "/api/v1/spend/export.csv?view=budgets"),
)


async def measure(url: str, token: str, requests: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, path in PAGES:
        cold = await gets(url, path, token, 1)
        warm = await gets(url, path, token, requests)
        out[name] = {"cold_ms": cold["p50_ms"], "p50_ms": warm["p50_ms"], "p99_ms": warm["p99_ms"],
                     "bytes": warm["bytes"], "errors": cold["errors"] + warm["errors"]}
    # Another 30-day window (from/to): cold again, its own cache entry.
    today = datetime.now(UTC).date()
    custom = f"/api/v1/spend?from={today - timedelta(days=20)}&to={today - timedelta(days=5)}"
    cold = await gets(url, custom, token, 1)
    out["API from/to 16 days (cold)"] = {"cold_ms": cold["p50_ms"], "p50_ms": None, "p99_ms": None,
                                         "bytes": cold["bytes"], "errors": cold["errors"]}
    return out


@contextlib.contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    if kind == "postgresql":
        with pg_schema() as url:
            yield url
    else:
        (workdir / "spend.db").unlink(missing_ok=True)
        yield f"sqlite:///{workdir / 'spend.db'}"


def run_spend_suite(python: str, workdir: Path, *, keys: int, days: int, models: int, db: str,
                    requests: int = 10) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    creds = Credentials()
    load_before = os.getloadavg()
    with database(db, workdir) as url:
        seeded = seed(url, keys, days, models, datetime.now(UTC).date())
        with drift_server(python, url, creds, env, log=workdir / "spend-server.log") as server:
            pages = asyncio.run(measure(server.url, creds.admin, requests))
    views = {n: p for n, p in pages.items() if not n.startswith("CSV")}
    worst_warm = max((p["p50_ms"] or 0) for p in views.values())
    worst_cold = max((p["cold_ms"] or 0) for p in pages.values())
    worst_csv = max((p["p50_ms"] or 0) for n, p in pages.items() if n.startswith("CSV"))
    return {
        **seeded, "days": days, "models": models, "db": db, "pages": pages,
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "targets": {
            "every spend view answers without an error": all(not p["errors"] for p in pages.values()),
            "page and API views, warm (cache of the pull): p50 under 250 ms": worst_warm < 250,
            "first view of a period after a pull, and every CSV, under 5 s": max(worst_cold, worst_csv) < 5000,
        },
    }


def spend_table(result: dict[str, Any]) -> list[str]:
    lines = [
        (f"Spend ({result['db']}): {result['keys']:,} keys × {result['days']} days × {result['models']} models = "
         f"{result['daily_rows']:,} daily rows (seeded in {result['seed_s']} s); load "
         f"{result['load_avg_before'][0]} → {result['load_avg_after'][0]}"),
        f"  {'view':<40} {'cold ms':>9} {'warm p50':>9} {'warm p99':>9} {'bytes':>12}",
    ]
    for name, row in result["pages"].items():
        def fmt(v: float | None) -> str:
            return "—" if v is None else f"{v:.1f}"
        lines.append(f"  {name:<40} {fmt(row['cold_ms']):>9} {fmt(row['p50_ms']):>9} {fmt(row['p99_ms']):>9} "
                     f"{row['bytes']:>12,}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spend", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keys", type=int, default=50_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--models", type=int, default=2, help="model groups per key and day (≤ 4)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--requests", type=int, default=10, help="warm requests per view")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/workspace-agent-bench-spend"))
    args = parser.parse_args(argv)
    if not (0 < args.keys <= 200_000 and 0 < args.days <= 100 and 0 < args.models <= len(MODELS)
            and 0 < args.requests <= 100):
        parser.error("bounded runs only: ≤ 200,000 keys, ≤ 100 days, ≤ 4 models, ≤ 100 requests")
    result = run_spend_suite(sys.executable, args.workdir, keys=args.keys, days=args.days,
                             models=args.models, db=args.db, requests=args.requests)
    print("\n".join(spend_table(result)))
    for what, ok in result["targets"].items():
        print(f"  [{'met ' if ok else 'MISS'}] {what}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
