"""Server processes (replicas, uvicorn workers) registered in the database, with a heartbeat.

Each process has a row in `drift_replicas`: the schema it speaks (so a contract migration can
refuse while an older replica is alive, db.migrate) and its counters, refreshed every
`replica_heartbeat_s` (so /metrics of any process shows every process's, see metrics.py).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, delete, select, update

from . import __version__
from .db import REPLICA_ALIVE_S, SCHEMA_VERSION, replicas, write_tx

if TYPE_CHECKING:
    from .app import Ctx

log = logging.getLogger("workspace_agent_server.replicas")
KEEP_GONE = timedelta(days=1)  # a stopped or silent replica's row (and counters) is kept this long


def new_replica_id() -> str:
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def _now() -> datetime:
    return datetime.now(UTC)


def register_tx(engine: Engine, replica_id: str) -> None:
    now = _now()
    with write_tx(engine) as conn:
        conn.execute(
            replicas.insert().values(
                id=replica_id,
                schema_version=SCHEMA_VERSION,
                server_version=__version__,
                started_at=now,
                heartbeat_at=now,
                counters="{}",
            )
        )
        conn.execute(delete(replicas).where(replicas.c.heartbeat_at < now - KEEP_GONE))


def counters_of(ctx: Ctx) -> dict[str, float]:
    stats = ctx.writer.stats
    return ctx.metrics.snapshot({"batches": stats.batches, "reports": stats.reports})


def heartbeat_tx(ctx: Ctx, stopped: bool = False) -> None:
    now = _now()
    with write_tx(ctx.engine) as conn:
        conn.execute(
            update(replicas)
            .where(replicas.c.id == ctx.replica_id)
            .values(
                heartbeat_at=now,
                counters=json.dumps(counters_of(ctx)),
                stopped_at=now if stopped else None,
            )
        )


def stopped_tx(ctx: Ctx) -> None:
    heartbeat_tx(ctx, stopped=True)


async def heartbeat_loop(ctx: Ctx) -> None:
    while True:
        await asyncio.sleep(ctx.settings.replica_heartbeat_s)
        try:
            await ctx.run_db(heartbeat_tx, ctx)
        except Exception as exc:  # noqa: BLE001 (the next beat tries again)
            log.warning("replica heartbeat failed: %s", exc)


def read_all(conn: Connection) -> list[dict[str, Any]]:
    """Every replica seen within a day: id, schema, alive, counters."""
    now = _now()
    rows = conn.execute(select(replicas).where(replicas.c.heartbeat_at >= now - KEEP_GONE)).all()
    alive_after = now - timedelta(seconds=REPLICA_ALIVE_S)
    return [
        {
            "id": r.id,
            "schema_version": r.schema_version,
            "alive": r.stopped_at is None and r.heartbeat_at >= alive_after,
            "counters": json.loads(r.counters or "{}"),
        }
        for r in rows
    ]
