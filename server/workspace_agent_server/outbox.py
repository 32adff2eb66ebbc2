"""The webhook outbox: notices stored in the transaction that causes them, sent by any replica.

A notice is a row of `webhook_outbox`, inserted in the same transaction as the state change it
tells of (a report that makes a workspace drift, the scan that finds it stale): it exists exactly
when that change committed, and a restart or a kill cannot lose it. Senders take rows with a
lease: a claim moves `available_at` past the lease's end (PostgreSQL takes the rows with
`FOR UPDATE SKIP LOCKED`, so two replicas never wait for or take the same ones; SQLite's claim
runs under its single write lock). A delivered row is deleted; a failed one waits out its backoff;
a sender that dies leaves its rows to whoever claims after the lease. So a notice is delivered at
least once, and its `id` (stable across resends) lets a receiver drop repeats.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, delete, func, or_, select, update

from .db import webhook_outbox as outbox


def now_utc() -> datetime:
    """Leases and backoff are about real time on every replica (not a test's frozen clock)."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Notice:
    id: int
    notice_id: str
    event: dict[str, Any]  # {"id", "type", "at", "workspace"}
    attempts: int  # including the current one


def add(
    conn: Connection, kind: str, workspaces: Sequence[dict[str, Any]], window_s: float = 0.0
) -> int:
    """Store notices of `kind` about `workspaces` in the caller's transaction, due after the
    batch window (so that every replica's sender, polling or woken, waits for company)."""
    if not workspaces:
        return 0
    at = now_utc()
    due = at + timedelta(seconds=window_s)
    rows = []
    for ws in workspaces:
        notice_id = uuid.uuid4().hex
        event = {"id": notice_id, "type": kind, "at": at.isoformat(), "workspace": ws}
        rows.append(
            {
                "notice_id": notice_id,
                "kind": kind,
                "workspace_id": str(ws.get("id", ""))[:200],
                "payload": json.dumps(event, separators=(",", ":"), default=str),
                "created_at": at,
                "available_at": due,
                "attempts": 0,
            }
        )
    conn.execute(outbox.insert(), rows)
    return len(rows)


def add_event(
    conn: Connection, kind: str, workspace_id: str, fields: dict[str, Any], window_s: float = 0.0
) -> str:
    """Store one notice of `kind` whose event carries `fields` (e.g. a budget threshold's key and
    budget) besides its id, type and time; returns the event id."""
    at = now_utc()
    notice_id = uuid.uuid4().hex
    event = {"id": notice_id, "type": kind, "at": at.isoformat(), **fields}
    conn.execute(
        outbox.insert().values(
            notice_id=notice_id,
            kind=kind[:20],
            workspace_id=workspace_id[:200],
            payload=json.dumps(event, separators=(",", ":"), default=str),
            created_at=at,
            available_at=at + timedelta(seconds=window_s),
            attempts=0,
        )
    )
    return notice_id


def claim(
    conn: Connection,
    sender: str,
    limit: int,
    lease_s: float,
    window_s: float = 0.0,
    flushing: bool = False,
) -> list[Notice]:
    """Take up to `limit` notices, oldest first, for `lease_s` (the caller's transaction, which
    must be a write transaction; commit it before sending). Once one notice is due, the unclaimed
    ones still in their window (due within `window_s`) go with it: the batch window counts from
    the first notice, as one POST. A sender that is stopping (`flushing`) takes those at once."""
    now = now_utc()
    due_now = outbox.c.available_at <= now
    pending = outbox.c.failed_at.is_(None)
    first_due = select(outbox.c.id).where(pending, due_now).limit(1)
    if not flushing and conn.execute(first_due).first() is None:
        return []
    soon = now + timedelta(seconds=window_s)
    in_window = and_(outbox.c.claimed_by.is_(None), outbox.c.available_at <= soon)
    due = (
        select(outbox.c.id, outbox.c.notice_id, outbox.c.payload, outbox.c.attempts)
        .where(pending, or_(due_now, in_window))
        .order_by(outbox.c.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = conn.execute(due).all()
    if not rows:
        return []
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_([r.id for r in rows]))
        .values(
            available_at=now + timedelta(seconds=lease_s),
            claimed_by=sender,
            attempts=outbox.c.attempts + 1,
        )
    )
    return [Notice(r.id, r.notice_id, json.loads(r.payload), r.attempts + 1) for r in rows]


def delivered(conn: Connection, ids: Sequence[int]) -> int:
    return conn.execute(delete(outbox).where(outbox.c.id.in_(list(ids)))).rowcount or 0


def retry_later(conn: Connection, ids: Sequence[int], delay_s: float, error: str) -> None:
    """Back to the queue after `delay_s`, for any replica."""
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(list(ids)))
        .values(
            available_at=now_utc() + timedelta(seconds=delay_s),
            claimed_by=None,
            last_error=error[:300],
        )
    )


def give_up(conn: Connection, ids: Sequence[int], error: str) -> None:
    conn.execute(
        update(outbox)
        .where(outbox.c.id.in_(list(ids)))
        .values(failed_at=now_utc(), claimed_by=None, last_error=error[:300])
    )


def release(conn: Connection, sender: str) -> int:
    """Hand this sender's unfinished leases back at once (a graceful stop): another replica need
    not wait for the lease to end. The attempt it had counted is given back."""
    return (
        conn.execute(
            update(outbox)
            .where(outbox.c.claimed_by == sender, outbox.c.failed_at.is_(None))
            .values(available_at=now_utc(), claimed_by=None, attempts=outbox.c.attempts - 1)
        ).rowcount
        or 0
    )


def counts(conn: Connection) -> dict[str, int]:
    """{"waiting": not yet delivered, "failed": given up (kept until pruned)}: the truth for
    every replica, read at scrape time."""
    rows = conn.execute(
        select(outbox.c.failed_at.is_(None).label("waiting"), func.count()).group_by(
            outbox.c.failed_at.is_(None)
        )
    ).all()
    found = {bool(w): int(n) for w, n in rows}
    return {"waiting": found.get(True, 0), "failed": found.get(False, 0)}


def prune_failed(conn: Connection, before: datetime) -> int:
    return (
        conn.execute(
            delete(outbox).where(outbox.c.failed_at.is_not(None), outbox.c.failed_at < before)
        ).rowcount
        or 0
    )
