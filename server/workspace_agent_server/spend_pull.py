"""The spend pull: LiteLLM's keys and spend logs into this server's database, on a schedule.

Every process runs the loop; a lease in `spend_pull` lets one replica pull at a time, and a pull
that started less than a period ago (on any replica) makes the others wait, so N replicas pull
once per period, not N times. Writes replace, never add: key facts are upserted by LiteLLM's key
hash, and each pulled day's rows per (key, model group) are recomputed from all of that day's
requests (each counted once, by LiteLLM's request id) and written over the stored ones. So a
retried pull, or two replicas that both pulled (a lease that ran out), cannot count twice.
LiteLLM writes spend logs in batches, so each pull takes the day before the last one's "today"
again; older days are final.

Budget thresholds: one notice per key, budget window and threshold, stored in the webhook outbox
together with the `spend_alerts` row that makes it once-only, in the transaction that stores
the key's spend.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, delete, or_, select, tuple_, update

from . import outbox
from .db import spend_alerts, spend_daily, spend_keys, spend_pull, workspaces, write_tx
from .settings import Settings
from .spend_litellm import KeyRow, LiteLLM, LiteLLMError, LogRow, days, redact

if TYPE_CHECKING:
    from .app import Ctx

log = logging.getLogger("workspace_agent_server.spend")
PULL_ID = "litellm"
KEY_CHUNK = 1000  # keys per write transaction: ingest waits at most for one chunk
BUDGET_EVENT = "budget_threshold"


class LeaseLost(Exception):
    """Another replica holds the pull now (this one was too slow to renew)."""


@dataclass(frozen=True)
class PullResult:
    keys: int
    log_rows: int
    days: int
    alerts: int
    error: str | None = None


def make_source(settings: Settings) -> LiteLLM | None:
    """The LiteLLM to pull from, or None when spend is not configured."""
    if settings.litellm_url is None or settings.litellm_master_key is None:
        return None
    return LiteLLM(
        settings.litellm_url,
        settings.litellm_master_key,
        settings.spend_timeout_s,
        settings.spend_max_body_bytes,
        settings.spend_max_pages,
    )


def now_utc() -> datetime:
    """Leases are about real time on every replica (not a test's frozen clock)."""
    return datetime.now(UTC)


def lease_s(settings: Settings) -> float:
    """Longer than any one request of a pull: the lease is renewed after each."""
    return 3 * settings.spend_timeout_s + 30


def dialect_insert(conn: Connection, table: Table) -> Any:
    """INSERT with ON CONFLICT (PostgreSQL and SQLite both have it, in their own dialects)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert(table)


# --- lease ---------------------------------------------------------------------------------


def take_lease(
    conn: Connection, me: str, interval_s: float, lease: float, force: bool = False
) -> dict[str, Any] | None:
    """The pull's state row when this process may pull now, else None. `force` (an admin's
    "pull now") skips the wait for the period, never another replica's lease."""
    now = now_utc()
    conn.execute(
        dialect_insert(conn, spend_pull).values(id=PULL_ID, generation=0).on_conflict_do_nothing()
    )
    row = spend_pull.c
    conditions = [
        row.id == PULL_ID,
        # Not even this process's own lease: its loop and an admin's "pull now" take turns too.
        or_(row.lease_until.is_(None), row.lease_until < now),
    ]
    if not force:
        conditions.append(
            or_(row.started_at.is_(None), row.started_at <= now - timedelta(seconds=interval_s))
        )
    taken = conn.execute(
        update(spend_pull)
        .where(*conditions)
        .values(lease_by=me, lease_until=now + timedelta(seconds=lease), started_at=now)
    )
    if taken.rowcount != 1:
        return None
    found = conn.execute(select(spend_pull).where(row.id == PULL_ID)).mappings().one()
    return dict(found)


def renew(conn: Connection, me: str, lease: float) -> None:
    """Keep the lease for another `lease` seconds, and bump the data generation (this
    transaction writes): LeaseLost if another replica took it meanwhile."""
    done = conn.execute(
        update(spend_pull)
        .where(spend_pull.c.id == PULL_ID, spend_pull.c.lease_by == me)
        .values(
            lease_until=now_utc() + timedelta(seconds=lease),
            generation=spend_pull.c.generation + 1,
        )
    )
    if done.rowcount != 1:
        raise LeaseLost()


def finish(
    conn: Connection,
    me: str,
    *,
    error: str | None,
    keys: int | None = None,
    log_rows: int | None = None,
    duration_ms: int | None = None,
    synced_through: date | None = None,
) -> None:
    """Record how the pull went and hand the lease back."""
    now = now_utc()
    values: dict[str, Any] = {"lease_by": None, "lease_until": None, "duration_ms": duration_ms}
    if error is None:
        values.update(
            ok_at=now,
            error=None,
            error_at=None,
            keys=keys,
            log_rows=log_rows,
            synced_through=synced_through,
        )
    else:
        values.update(error=error[:1000], error_at=now)
    conn.execute(
        update(spend_pull)
        .where(spend_pull.c.id == PULL_ID, spend_pull.c.lease_by == me)
        .values(**values)
    )


def state(conn: Connection) -> dict[str, Any] | None:
    """The pull's state row (None before the first pull)."""
    found = conn.execute(select(spend_pull).where(spend_pull.c.id == PULL_ID)).mappings().first()
    return dict(found) if found is not None else None


# --- writes --------------------------------------------------------------------------------


def store_keys(conn: Connection, keys: Sequence[KeyRow], seen_at: datetime) -> None:
    """Upsert the facts of `keys` (LiteLLM's key hash is the primary key)."""
    if not keys:
        return
    rows = [
        {
            "token": k.token,
            "key_alias": k.key_alias,
            "key_name": k.key_name,
            "workspace_id": k.workspace_id,
            "workspace_name": k.workspace_name,
            "owner": k.owner,
            "template_name": k.template_name,
            "level": k.level,
            "generation": k.generation,
            "spend": k.spend,
            "max_budget": k.max_budget,
            "budget_duration": k.budget_duration,
            "budget_reset_at": k.budget_reset_at,
            "created_at": k.created_at,
            "expires_at": k.expires_at,
            "last_active": k.last_active,
            "blocked": k.blocked,
            "seen_at": seen_at,
        }
        for k in keys
    ]
    insert = dialect_insert(conn, spend_keys)
    changed = {name: insert.excluded[name] for name in rows[0] if name != "token"}
    conn.execute(insert.on_conflict_do_update(index_elements=["token"], set_=changed), rows)


def store_day(conn: Connection, day: date, rows: Iterable[LogRow]) -> int:
    """Write `day`'s totals per (key, model group) over what was stored for that day; returns
    how many (key, model group) rows the day has."""
    totals: dict[tuple[str, str], list[Any]] = {}
    for r in rows:
        t = totals.setdefault((r.token, r.model_group), [0.0, 0, 0, 0, r.start])
        t[0] += r.spend
        t[1] += 1
        t[2] += r.prompt_tokens
        t[3] += r.completion_tokens
        t[4] = max(t[4], r.start)
    conn.execute(delete(spend_daily).where(spend_daily.c.day == day))
    if not totals:
        return 0
    values = [
        {
            "token": token,
            "day": day,
            "model_group": group,
            "spend": t[0],
            "requests": t[1],
            "prompt_tokens": t[2],
            "completion_tokens": t[3],
            "last_at": t[4],
        }
        for (token, group), t in totals.items()
    ]
    insert = dialect_insert(conn, spend_daily)
    changed = {
        n: insert.excluded[n]
        for n in ("spend", "requests", "prompt_tokens", "completion_tokens", "last_at")
    }
    conn.execute(
        insert.on_conflict_do_update(index_elements=["token", "day", "model_group"], set_=changed),
        values,
    )
    newest: dict[str, datetime] = {}
    for (token, _), t in totals.items():
        newest[token] = max(newest.get(token, t[4]), t[4])
    for token, at in newest.items():
        conn.execute(
            update(spend_keys)
            .where(
                spend_keys.c.token == token,
                or_(spend_keys.c.last_spend_at.is_(None), spend_keys.c.last_spend_at < at),
            )
            .values(last_spend_at=at)
        )
    return len(values)


def period_of(key: KeyRow) -> str:
    """The budget window a key's spend belongs to: its reset time (moves on at each reset)."""
    return key.budget_reset_at.isoformat(timespec="seconds") if key.budget_reset_at else "total"


def budget_alerts(
    conn: Connection, keys: Sequence[KeyRow], thresholds: Sequence[int], window_s: float
) -> int:
    """Store a notice for each threshold a key's spend crossed in its current window, unless one
    was stored for that key, window and threshold before; returns how many were stored."""
    crossed = [
        (k, t)
        for k in keys
        if k.max_budget and k.max_budget > 0
        for t in sorted(set(thresholds))
        if k.spend >= k.max_budget * t / 100
    ]
    if not crossed:
        return 0
    pairs = {(k.token, period_of(k)) for k, _ in crossed}
    done = {
        (r.token, r.period, r.threshold)
        for r in conn.execute(
            select(spend_alerts.c.token, spend_alerts.c.period, spend_alerts.c.threshold).where(
                tuple_(spend_alerts.c.token, spend_alerts.c.period).in_(list(pairs))
            )
        )
    }
    new = [(k, t) for k, t in crossed if (k.token, period_of(k), t) not in done]
    if not new:
        return 0
    ids = {k.workspace_id for k, _ in new if k.workspace_id}
    states = {
        r.id: r.state
        for r in conn.execute(
            select(workspaces.c.id, workspaces.c.state).where(workspaces.c.id.in_(ids))
        )
    }
    stored = 0
    for key, threshold in new:
        inserted = conn.execute(
            dialect_insert(conn, spend_alerts)
            .values(
                token=key.token,
                period=period_of(key),
                threshold=threshold,
                sent_at=now_utc(),
                spend=key.spend,
                max_budget=key.max_budget,
            )
            .on_conflict_do_nothing()
            .returning(spend_alerts.c.threshold)  # rowcount is -1 here with psycopg
        ).first()
        if inserted is None:
            continue  # another replica stored it a moment ago
        outbox.add_event(
            conn,
            BUDGET_EVENT,
            key.workspace_id or "",
            budget_event(key, threshold, states),
            window_s,
        )
        stored += 1
    return stored


def budget_event(key: KeyRow, threshold: int, states: dict[str, str]) -> dict[str, Any]:
    """The webhook event's body (besides id, type and at); never the key itself."""
    assert key.max_budget
    return {
        "workspace": {
            "id": key.workspace_id,
            "name": key.workspace_name,
            "owner": key.owner,
            "template": key.template_name,
            "state": states.get(key.workspace_id or ""),
        },
        "key": {
            "alias": key.key_alias,
            "name": key.key_name,
            "level": key.level,
            "generation": key.generation,
        },
        "budget": {
            "threshold_percent": threshold,
            "percent": round(100 * key.spend / key.max_budget, 1),
            "spend": key.spend,
            "max_budget": key.max_budget,
            "budget_duration": key.budget_duration,
            "budget_reset_at": key.budget_reset_at.isoformat() if key.budget_reset_at else None,
        },
    }


# --- the pull ------------------------------------------------------------------------------


async def pull_once(ctx: Ctx, force: bool = False) -> PullResult | None:
    """One pull if this process may make it now (None otherwise); failures are recorded on the
    state row (the pages show them) and returned, never raised."""
    source = ctx.litellm
    if source is None:
        return None
    settings, me, lease = ctx.settings, ctx.replica_id, lease_s(ctx.settings)

    def tx(func: Any, *args: Any) -> Any:
        with write_tx(ctx.engine) as conn:
            return func(conn, *args)

    found = await ctx.run_db(tx, take_lease, me, settings.spend_pull_interval_s, lease, force)
    if found is None:
        return None
    started = time.monotonic()
    today = ctx.clock().astimezone(UTC).date()
    earliest = today - timedelta(days=settings.spend_backfill_days - 1)
    synced: date | None = found["synced_through"]
    first = max(earliest, synced - timedelta(days=1)) if synced else earliest
    result = PullResult(0, 0, 0, 0)
    try:
        async with source.client() as client:
            keys = await source.keys(client)
            seen_at = ctx.clock()
            alerts = 0
            for i in range(0, len(keys), KEY_CHUNK):
                chunk = keys[i : i + KEY_CHUNK]
                alerts += await ctx.run_db(tx, _keys_tx, me, lease, chunk, seen_at, ctx)
            await ctx.run_db(tx, _keys_done_tx, me, lease, seen_at)
            if alerts and ctx.notifier is not None:
                ctx.notifier.wake()
            log_rows = 0
            pulled = list(days(first, today))
            for day in pulled:
                rows = await source.spend_logs(client, day)
                await ctx.run_db(tx, _day_tx, me, lease, day, rows)
                log_rows += len(rows)
        result = PullResult(len(keys), log_rows, len(pulled), alerts)
        await ctx.run_db(
            tx,
            lambda conn: finish(
                conn,
                me,
                error=None,
                keys=len(keys),
                log_rows=log_rows,
                duration_ms=int(1000 * (time.monotonic() - started)),
                synced_through=today,
            ),
        )
        log.info(
            "spend pull: %d keys, %d requests over %d day(s) in %.1f s",
            len(keys),
            log_rows,
            len(pulled),
            time.monotonic() - started,
        )
        return result
    except LeaseLost:
        log.warning("spend pull: another replica took the lease; this pull stops")
        return None
    except LiteLLMError as exc:
        problem = str(exc)
    except Exception as exc:  # noqa: BLE001 (recorded and shown; the next period tries again)
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        problem = f"the spend pull failed: {type(exc).__name__}: {first_line[:300]}"
    problem = redact(problem, settings.litellm_master_key)
    log.warning("spend pull failed: %s", problem)
    duration = int(1000 * (time.monotonic() - started))
    await ctx.run_db(tx, lambda conn: finish(conn, me, error=problem, duration_ms=duration))
    return PullResult(result.keys, result.log_rows, result.days, result.alerts, problem)


def _keys_tx(
    conn: Connection, me: str, lease: float, chunk: Sequence[KeyRow], seen_at: datetime, ctx: Ctx
) -> int:
    renew(conn, me, lease)
    store_keys(conn, chunk, seen_at)
    settings = ctx.settings
    if not settings.webhook_url:
        return 0
    return budget_alerts(
        conn, chunk, settings.spend_budget_thresholds, settings.webhook_batch_window_s
    )


def _keys_done_tx(conn: Connection, me: str, lease: float, seen_at: datetime) -> None:
    renew(conn, me, lease)
    conn.execute(update(spend_pull).where(spend_pull.c.id == PULL_ID).values(keys_at=seen_at))


def _day_tx(conn: Connection, me: str, lease: float, day: date, rows: list[LogRow]) -> None:
    renew(conn, me, lease)
    store_day(conn, day, rows)


async def pull_loop(ctx: Ctx, after: Callable[[Ctx], Awaitable[None]] | None = None) -> None:
    """Every process: try to pull every few seconds; the lease and the period decide who does.
    `after` runs after each try (spend_pages.warm: this process's cache of the default view)."""
    tick = min(max(ctx.settings.spend_pull_interval_s / 5, 1.0), 60.0)
    while True:
        try:
            await pull_once(ctx)
            if after is not None:
                await after(ctx)
        except Exception:
            log.exception("spend pull could not run")
        await asyncio.sleep(tick)
