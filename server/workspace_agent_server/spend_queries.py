"""Spend over a period, grouped for the pages and the API, from the pulled tables.

The costly part, a period's sums per (key, model group) over up to millions of daily rows, is
computed once per period and pull (spend_pull's `generation` changes with every write) and kept
in a small per-process cache; the groupings (workspace, owner, template, tier, model), the top
spenders and the CSV are folded from it in Python. Budget use and inactive keys are indexed
queries on `spend_keys`. Compliance comes from `workspaces`: a drifted workspace that spends is
flagged in every view.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import islice
from typing import Any, TypeVar

from sqlalchemy import Connection, and_, func, or_, select

from .db import BUDGET_USE, IDLE_SINCE, spend_daily, spend_keys, spend_pull, workspaces
from .spend_pull import PULL_ID

PRESETS = ("today", "7d", "30d", "this-month", "last-month")
GROUPS = ("workspace", "owner", "template", "tier", "model")
MAX_DAYS = 400  # the longest period one view adds up
NO_WORKSPACE = "(no workspace)"
T = TypeVar("T")


class PeriodError(ValueError):
    """A period that cannot be shown; the message says what is allowed."""


@dataclass(frozen=True)
class Period:
    start: date  # first UTC day
    end: date  # last UTC day (inclusive)
    preset: str | None

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def as_dict(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat(), "preset": self.preset}


def parse_period(preset: str | None, start: str | None, end: str | None, today: date) -> Period:
    """From/to (YYYY-MM-DD, UTC days, both included) win over a preset; default: 30 days."""
    if start or end:
        try:
            first = date.fromisoformat((start or end or "").strip())
            last = date.fromisoformat((end or start or "").strip())
        except ValueError:
            raise PeriodError("from and to are days written YYYY-MM-DD (UTC)") from None
        if last < first:
            raise PeriodError("the period ends before it starts: to must not be before from")
        if (last - first).days + 1 > MAX_DAYS:
            raise PeriodError(f"a period is at most {MAX_DAYS} days")
        return Period(first, last, None)
    preset = preset or "30d"
    if preset == "today":
        return Period(today, today, preset)
    if preset in ("7d", "30d"):
        return Period(today - timedelta(days=int(preset[:-1]) - 1), today, preset)
    if preset == "this-month":
        return Period(today.replace(day=1), today, preset)
    if preset == "last-month":
        last = today.replace(day=1) - timedelta(days=1)
        return Period(last.replace(day=1), last, preset)
    raise PeriodError(f"preset must be one of {', '.join(PRESETS)}")


@dataclass(frozen=True)
class KeyInfo:
    token: str
    workspace_id: str | None
    workspace_name: str | None
    owner: str | None
    template_name: str | None
    level: str | None
    key_alias: str | None


class Cache:
    """A few recent results, by key; thread-safe (pages run in worker threads)."""

    def __init__(self, size: int = 8) -> None:
        self.size = size
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], T]) -> T:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]  # type: ignore[no-any-return]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def pull_state(conn: Connection) -> dict[str, Any]:
    found = conn.execute(select(spend_pull).where(spend_pull.c.id == PULL_ID)).mappings().first()
    return dict(found) if found is not None else {}


def status(conn: Connection, configured: bool, interval_s: float, now: datetime) -> dict[str, Any]:
    """How fresh the figures are, for the page's banner and the API: `state` is off (no
    LiteLLM configured), waiting (no pull finished yet), ok, or failing (the last pull failed:
    the figures are those of the last good one), with a sentence."""
    st = pull_state(conn)
    ok_at, error_at = st.get("ok_at"), st.get("error_at")
    out: dict[str, Any] = {
        "ok_at": ok_at,
        "error": st.get("error"),
        "error_at": error_at,
        "started_at": st.get("started_at"),
        "pulling": bool(st.get("lease_until") and st["lease_until"] > now),
        "keys": st.get("keys"),
        "log_rows": st.get("log_rows"),
        "duration_ms": st.get("duration_ms"),
        "interval_s": interval_s,
    }
    if not configured:
        state, text = (
            "off",
            (
                "Spend is not pulled: set DRIFT_LITELLM_URL and DRIFT_LITELLM_MASTER_KEY "
                "(or --litellm-master-key-file)."
            ),
        )
    elif error_at is not None and (ok_at is None or error_at >= ok_at):
        since = (
            "no pull has succeeded yet" if ok_at is None else "figures are from the last good pull"
        )
        state, text = "failing", f"The last spend pull failed: {st.get('error')} ({since})."
    elif ok_at is None:
        state, text = "waiting", "The first spend pull has not finished yet."
    elif (now - ok_at).total_seconds() > 3 * interval_s + 60:
        state, text = "failing", "No spend pull has finished for more than three periods."
    else:
        state, text = "ok", "Spend is pulled from LiteLLM."
    out |= {"state": state, "text": text}
    return out


def generation(conn: Connection) -> int:
    found = conn.execute(
        select(spend_pull.c.generation).where(spend_pull.c.id == PULL_ID)
    ).scalar_one_or_none()
    return int(found or 0)


WIDE_DAYS = 4  # from this many days on, SQLite reads the key-first index (no sort)


def period_sums(conn: Connection, period: Period) -> list[tuple[str, str, float, int]]:
    """(key hash, model group, spend, requests) over the period's days."""
    d = spend_daily.c
    if conn.dialect.name == "sqlite" and period.days >= WIDE_DAYS:
        # SQLite's planner takes the day range and sorts every row for GROUP BY; walking the
        # key-first covering index streams the groups instead (4x faster for a month here).
        rows = conn.exec_driver_sql(
            "SELECT token, model_group, sum(spend), sum(requests) FROM spend_daily "
            "INDEXED BY ix_spend_daily_key WHERE day >= ? AND day <= ? "
            "GROUP BY token, model_group",
            (period.start.isoformat(), period.end.isoformat()),
        )
        return [(r[0], r[1], float(r[2] or 0.0), int(r[3] or 0)) for r in rows]
    rows = conn.execute(
        select(d.token, d.model_group, func.sum(d.spend), func.sum(d.requests))
        .where(d.day >= period.start, d.day <= period.end)
        .group_by(d.token, d.model_group)
    )
    return [(r[0], r[1], float(r[2] or 0.0), int(r[3] or 0)) for r in rows]


def key_infos(conn: Connection) -> dict[str, KeyInfo]:
    k = spend_keys.c
    rows = conn.execute(
        select(
            k.token,
            k.workspace_id,
            k.workspace_name,
            k.owner,
            k.template_name,
            k.level,
            k.key_alias,
        )
    )
    return {r.token: KeyInfo(*r) for r in rows}


def drifted_ids(conn: Connection) -> set[str]:
    """Workspaces whose last known state is drifted (also while stale)."""
    return set(
        conn.execute(select(workspaces.c.id).where(workspaces.c.state == "drifted")).scalars()
    )


def tier_of(model_group: str, tiers: list[tuple[str, str]]) -> str:
    lowered = model_group.lower()
    return next((tier for tier, text in tiers if text in lowered), "other")


def _group_key(
    info: KeyInfo | None, token: str, model: str, group: str, tiers: list[tuple[str, str]]
) -> tuple[str, str]:
    """(key, label) of the row a (key, model group) sum belongs to."""
    if group == "model":
        return model, model
    if group == "tier":
        tier = tier_of(model, tiers)
        return tier, tier
    if info is None:
        return NO_WORKSPACE, f"{NO_WORKSPACE}: keys not in LiteLLM's key list"
    if group == "owner":
        return info.owner or "(no owner)", info.owner or "(no owner)"
    if group == "template":
        return info.template_name or "(no template)", info.template_name or "(no template)"
    if not info.workspace_id:
        return NO_WORKSPACE, f"{NO_WORKSPACE}: keys without coder_workspace metadata"
    return info.workspace_id, info.workspace_name or info.workspace_id


@dataclass(frozen=True)
class Grouped:
    rows: list[dict[str, Any]]  # biggest spend first; "_keys"/"_ws": sets of keys, workspaces
    total: float
    requests: int


def fold(
    sums: list[tuple[str, str, float, int]],
    infos: dict[str, KeyInfo],
    group: str,
    tiers: list[tuple[str, str]],
) -> Grouped:
    """The period's sums grouped; biggest spend first."""
    rows: dict[str, dict[str, Any]] = {}
    for token, model, spend, requests in sums:
        info = infos.get(token)
        key, label = _group_key(info, token, model, group, tiers)
        row = rows.get(key)
        if row is None:
            row = rows[key] = {
                "key": key,
                "label": label,
                "spend": 0.0,
                "requests": 0,
                "_keys": set(),
                "_ws": set(),
            }
            if group == "workspace" and info is not None:
                row |= {"owner": info.owner, "template": info.template_name, "level": info.level}
        row["spend"] += spend
        row["requests"] += requests
        row["_keys"].add(token)
        if info is not None and info.workspace_id:
            row["_ws"].add(info.workspace_id)
    out = sorted(rows.values(), key=lambda r: (-r["spend"], r["key"]))
    return Grouped(out, sum(r["spend"] for r in out), sum(r["requests"] for r in out))


def view(
    conn: Connection,
    cache: Cache,
    period: Period,
    group: str,
    tiers: list[tuple[str, str]],
    limit: int,
    offset: int = 0,
) -> dict[str, Any]:
    """Spend over `period` grouped by `group`, with totals, the top spending workspaces and the
    drifted workspaces that spend. `limit`/`offset` page the grouped rows."""
    gen = generation(conn)
    sums = cache.get(("sums", gen, period.start, period.end), lambda: period_sums(conn, period))
    infos = cache.get(("keys", gen), lambda: key_infos(conn))
    grouped = cache.get(
        ("fold", gen, period.start, period.end, group, tuple(tiers)),
        lambda: fold(sums, infos, group, tiers),
    )
    by_ws = (
        grouped
        if group == "workspace"
        else cache.get(
            ("fold", gen, period.start, period.end, "workspace", tuple(tiers)),
            lambda: fold(sums, infos, "workspace", tiers),
        )
    )
    drifted = drifted_ids(conn)
    total, requests = grouped.total, grouped.requests

    def public(row: dict[str, Any]) -> dict[str, Any]:
        spending_drifted = sorted(row["_ws"] & drifted)
        return {
            **{k: v for k, v in row.items() if not k.startswith("_")},
            "keys": len(row["_keys"]),
            "workspaces": len(row["_ws"]),
            "share": round(100 * row["spend"] / total, 1) if total else 0.0,
            "drifted_workspaces": len(spending_drifted),
            "drifted": bool(spending_drifted),
        }

    return {
        "period": period.as_dict(),
        "group": group,
        "total": {"spend": total, "requests": requests},
        "matched": len(grouped.rows),
        "rows": [public(r) for r in grouped.rows[offset : offset + limit]],
        "top": [public(r) for r in islice((r for r in by_ws.rows if r["key"] != NO_WORKSPACE), 10)],
        "drifted_spending": [
            public(r)
            for r in islice((r for r in by_ws.rows if r["key"] in drifted and r["spend"] > 0), 100)
        ],
    }


def group_rows(
    conn: Connection, cache: Cache, period: Period, group: str, tiers: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """Every grouped row (for CSV)."""
    found = view(conn, cache, period, group, tiers, limit=10**9)
    return list(found["rows"])


def _listed(conn: Connection) -> Any:
    """Keys in LiteLLM's last full key list (a deleted key drops out of these views)."""
    keys_at = conn.execute(
        select(spend_pull.c.keys_at).where(spend_pull.c.id == PULL_ID)
    ).scalar_one_or_none()
    return spend_keys.c.seen_at >= keys_at if keys_at is not None else spend_keys.c.token.is_(None)


def _key_dict(r: Any, drifted: set[str], now: datetime) -> dict[str, Any]:
    pct = round(100 * r.spend / r.max_budget, 1) if r.max_budget else None
    since = r.last_spend_at or r.created_at
    return {
        "key_alias": r.key_alias,
        "key_name": r.key_name,
        "workspace_id": r.workspace_id,
        "workspace_name": r.workspace_name,
        "owner": r.owner,
        "template": r.template_name,
        "level": r.level,
        "spend": r.spend,
        "max_budget": r.max_budget,
        "percent": pct,
        "budget_duration": r.budget_duration,
        "budget_reset_at": r.budget_reset_at,
        "created_at": r.created_at,
        "last_spend_at": r.last_spend_at,
        "last_active": r.last_active,
        "idle_days": None if since is None else max((now - since).days, 0),
        "drifted": (r.workspace_id or "") in drifted,
    }


_KEY_COLUMNS = [
    spend_keys.c.key_alias,
    spend_keys.c.key_name,
    spend_keys.c.workspace_id,
    spend_keys.c.workspace_name,
    spend_keys.c.owner,
    spend_keys.c.template_name,
    spend_keys.c.level,
    spend_keys.c.spend,
    spend_keys.c.max_budget,
    spend_keys.c.budget_duration,
    spend_keys.c.budget_reset_at,
    spend_keys.c.created_at,
    spend_keys.c.last_spend_at,
    spend_keys.c.last_active,
]


def budgets(conn: Connection, now: datetime, limit: int, offset: int = 0) -> dict[str, Any]:
    """Keys with a max budget, by share of it used (most first), with their reset times."""
    k = spend_keys.c
    where = and_(_listed(conn), k.max_budget > 0)
    matched = conn.execute(select(func.count()).select_from(spend_keys).where(where)).scalar_one()
    rows = conn.execute(
        select(*_KEY_COLUMNS)
        .where(where)
        .order_by(BUDGET_USE.desc(), k.token.desc())
        .limit(limit)
        .offset(offset)
    ).all()
    drifted = drifted_ids(conn)
    return {"matched": matched, "keys": [_key_dict(r, drifted, now) for r in rows]}


def inactive(
    conn: Connection, now: datetime, idle_days: int, limit: int, offset: int = 0
) -> dict[str, Any]:
    """Keys with no spend for `idle_days` (never spent: counted from when the key was made),
    longest idle first."""
    k = spend_keys.c
    cutoff = now - timedelta(days=idle_days)
    since = IDLE_SINCE
    where = and_(_listed(conn), or_(since < cutoff, since.is_(None)))
    matched = conn.execute(select(func.count()).select_from(spend_keys).where(where)).scalar_one()
    rows = conn.execute(
        select(*_KEY_COLUMNS)
        .where(where)
        .order_by(since.asc(), k.token)
        .limit(limit)
        .offset(offset)
    ).all()
    drifted = drifted_ids(conn)
    return {
        "days": idle_days,
        "matched": matched,
        "keys": [_key_dict(r, drifted, now) for r in rows],
    }


def today_utc(now: datetime) -> date:
    return now.astimezone(UTC).date()
