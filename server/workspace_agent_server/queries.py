"""Plain functions on a SQLAlchemy Core connection: enroll, ingest, fleet, detail, revoke, stale.

The caller owns the transaction (`db.write_tx`; the writer puts many reports in one). Ingest of a
batch is a fixed handful of statements: read its workspaces (and check the tokens), insert the
report ids (the duplicate check), insert the transitions, update the workspaces; rule rows are read
and written only for a report whose rules changed (a digest of them is kept with the workspace).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, bindparam, case, delete, func, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql.elements import ColumnElement

from workspace_agent.wire import Report, WorkspaceIdentity

from .db import reports, rule_states, transitions, workspaces
from .ingest import (
    FAILING,
    IngestPlan,
    RuleRow,
    plan_ingest,
    plan_same_rules,
    rules_digest,
    same_rules_apply,
)

STATUSES = ("drifted", "error", "stale", "unknown", "compliant")  # worst first
FAILING_RULES_SHOWN = 5


def utc(value: datetime) -> datetime:
    """Naive datetimes from a client are taken as UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _insert(conn: Connection, table: Any) -> Any:  # a dialect's INSERT … ON CONFLICT
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    return dialect.insert(table)


# --- tokens ----------------------------------------------------------------------------------


def enroll(
    conn: Connection,
    who: WorkspaceIdentity,
    agent_version: str,
    hashed: str,
    now: datetime,
    identity_mode: str = "enrollment-secret",
    template_name: str | None = None,
) -> bool:
    """Create the workspace or give it a new token (the old one stops working); False (nothing
    written) when a shared-secret enrollment meets a workspace that enrolled verified.

    One INSERT … ON CONFLICT DO UPDATE … WHERE decides, so the check and the write cannot be
    split by a concurrent verified enrollment: PostgreSQL locks the conflicting row and evaluates
    the WHERE on its newest version, SQLite holds the write lock for the statement."""
    stmt = _insert(conn, workspaces).values(
        id=who.id,
        name=who.name,
        owner=who.owner,
        identity_mode=identity_mode,
        template_name=template_name,
        agent_version=agent_version,
        token_hash=hashed,
        token_issued_at=now,
        token_revoked_at=None,
        enrolled_at=now,
        state="unknown",
        notes="[]",
        rules_total=0,
        rules_failing=0,
        rules_corrected=0,
        stale_notified=False,
    )
    verified_only = (
        None
        if identity_mode == "coder-agent-token"
        else or_(
            workspaces.c.identity_mode.is_(None),
            workspaces.c.identity_mode != "coder-agent-token",
        )
    )
    written = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[workspaces.c.id],
            set_={
                "name": stmt.excluded.name,
                "owner": stmt.excluded.owner,
                "identity_mode": stmt.excluded.identity_mode,
                "template_name": stmt.excluded.template_name,
                "agent_version": stmt.excluded.agent_version,
                "token_hash": stmt.excluded.token_hash,
                "token_issued_at": stmt.excluded.token_issued_at,
                "token_revoked_at": None,
            },
            where=verified_only,
        ).returning(workspaces.c.id)
    ).first()
    return written is not None


def enrolled_identity(conn: Connection, workspace_id: str) -> str | None:
    """How an enrolled workspace proved itself last time (None: never enrolled)."""
    row = conn.execute(
        select(workspaces.c.identity_mode).where(workspaces.c.id == workspace_id)
    ).first()
    if row is None:
        return None
    return str(row.identity_mode or "enrollment-secret")


@dataclass(frozen=True)
class TokenOwner:
    workspace_id: str
    revoked: bool


def token_owner(conn: Connection, hashed: str) -> TokenOwner | None:
    row = conn.execute(
        select(workspaces.c.id, workspaces.c.token_revoked_at).where(
            workspaces.c.token_hash == hashed
        )
    ).first()
    return None if row is None else TokenOwner(row.id, row.token_revoked_at is not None)


def revoke(conn: Connection, workspace_id: str, now: datetime) -> datetime | None:
    """Revoke the workspace's token; returns when it was revoked, None for an unknown workspace."""
    row = conn.execute(
        select(workspaces.c.token_revoked_at).where(workspaces.c.id == workspace_id)
    ).first()
    if row is None:
        return None
    if row.token_revoked_at is not None:
        revoked: datetime = row.token_revoked_at
        return revoked
    conn.execute(
        update(workspaces).where(workspaces.c.id == workspace_id).values(token_revoked_at=now)
    )
    return now


# --- ingest ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestResult:
    duplicate: bool
    applied: bool = False  # False for a duplicate, or a report older than the latest one
    newly_drifted: bool = False
    workspace: dict[str, Any] = field(default_factory=dict)  # for the webhook
    refused: str | None = None  # "revoked" / "unauthorized": the token failed inside the write


@dataclass(frozen=True)
class IngestItem:
    """One report to store; with `token_hash`, the token is checked again in the transaction."""

    workspace_id: str
    report: Report
    received_at: datetime
    token_hash: str | None = None


@dataclass
class _Ws:
    """A workspace row as read at the start of a batch, then as each of its reports changes it."""

    state: str
    state_since: datetime | None
    last_report_at: datetime | None
    rules_digest: str | None
    # Coder said who this is at enrollment (identity_mode coder-agent-token): a report's own
    # claim does not rename it, so these stay as enrolled. None: the report's name and owner.
    verified_name_owner: tuple[str, str] | None
    last_seen_at: datetime | None = None  # set by every new report (also one sent late)
    values: dict[str, Any] | None = None  # the columns the latest applied report sets


@functools.cache
def _ingest_statements(dialect: str) -> dict[str, Any]:
    """Ingest's statements, built once per dialect with bind parameters (building Core
    statements with literal values on every report cost more than running them)."""
    add_reports = (
        (postgresql if dialect == "postgresql" else sqlite)
        .insert(reports)
        .on_conflict_do_nothing()
        .returning(reports.c.workspace_id, reports.c.report_id)
    )
    read_ws = (
        select(
            workspaces.c.id,
            workspaces.c.state,
            workspaces.c.state_since,
            workspaces.c.last_report_at,
            workspaces.c.token_hash,
            workspaces.c.token_revoked_at,
            workspaces.c.rules_digest,
            workspaces.c.identity_mode,
            workspaces.c.name,
            workspaces.c.owner,
        )
        .where(workspaces.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(workspaces.c.id)
    )
    if dialect == "postgresql":
        # Reports of one workspace apply one after the other, also across server processes; rows
        # are locked in id order, so two batches cannot deadlock. NO KEY UPDATE: the KEY SHARE
        # locks that the foreign keys of the rows inserted below take must not conflict with it.
        read_ws = read_ws.with_for_update(key_share=True)
    return {
        "add_reports": add_reports,
        "read_ws": read_ws,
        "read_rules": select(rule_states).where(rule_states.c.workspace_id == bindparam("k_id")),
        "update_ws": update(workspaces).where(workspaces.c.id == bindparam("k_id")),
        "update_rule": update(rule_states).where(
            and_(
                rule_states.c.workspace_id == bindparam("k_ws"),
                rule_states.c.rule_id == bindparam("k_rule"),
            )
        ),
    }


def ingest(
    conn: Connection,
    workspace_id: str,
    report: Report,
    received_at: datetime,
    token_hash: str | None = None,
) -> IngestResult:
    """Store one report (the caller's transaction); see `ingest_many`."""
    return ingest_many(conn, [IngestItem(workspace_id, report, received_at, token_hash)])[0]


def ingest_many(conn: Connection, items: Sequence[IngestItem]) -> list[IngestResult]:
    """Store reports in the caller's transaction, applied in the order given, with a fixed
    number of statements for the whole batch (plus rule reads and writes for reports whose
    rules changed). A known report id changes nothing.

    With `token_hash`, the token is checked again here, in the transaction that writes: a token
    revoked (or replaced by a new enrollment) after the request was let in writes nothing, whatever
    process revoked it; so a cache in front of this check can never let a revoked token write.
    Raises LookupError for a workspace that never enrolled (only possible without `token_hash`).
    """
    stmt = _ingest_statements(conn.dialect.name)
    rows = {
        r.id: r
        for r in conn.execute(stmt["read_ws"], {"ids": sorted({i.workspace_id for i in items})})
    }
    results: list[IngestResult | None] = [None] * len(items)
    accepted: list[tuple[int, IngestItem, datetime]] = []
    for n, item in enumerate(items):
        row = rows.get(item.workspace_id)
        if item.token_hash is not None:
            if row is None or row.token_hash != item.token_hash:
                results[n] = IngestResult(duplicate=False, refused="unauthorized")
                continue
            if row.token_revoked_at is not None:
                results[n] = IngestResult(duplicate=False, refused="revoked")
                continue
        if row is None:
            raise LookupError(f"workspace {item.workspace_id!r} has not enrolled")
        # A workspace clock that runs ahead must not freeze its state: no report finished after
        # the server received it.
        accepted.append((n, item, min(utc(item.report.finished_at), item.received_at)))
    new: set[tuple[str, str]] = set()
    if accepted:
        new = {
            (r[0], r[1])
            for r in conn.execute(
                stmt["add_reports"],
                [
                    {
                        "workspace_id": item.workspace_id,
                        "report_id": item.report.report_id,
                        "kind": item.report.kind,
                        "received_at": item.received_at,
                        "finished_at": finished,
                        "exit_code": item.report.exit_code,
                    }
                    for _, item, finished in accepted
                ],
            )
        }
    state: dict[str, _Ws] = {}
    moves: list[dict[str, Any]] = []
    for n, item, finished in accepted:
        key = (item.workspace_id, item.report.report_id)
        if key not in new:
            results[n] = IngestResult(duplicate=True)
            continue
        new.discard(key)  # the same report twice in one batch: the second is a duplicate
        row = rows[item.workspace_id]
        ws = state.setdefault(
            item.workspace_id,
            _Ws(
                row.state,
                row.state_since,
                row.last_report_at,
                row.rules_digest,
                (row.name, row.owner) if row.identity_mode == "coder-agent-token" else None,
            ),
        )
        ws.last_seen_at = item.received_at
        if ws.last_report_at is not None and finished < ws.last_report_at:
            # Sent late (e.g. from the agent's queue) after a newer one: a sign of life, not state.
            results[n] = IngestResult(duplicate=False)
            continue
        results[n] = _apply(conn, stmt, item, finished, ws, moves)
    if moves:
        conn.execute(transitions.insert(), moves)
    applied = [
        {
            "k_id": ws_id,
            **ws.values,
            "state_since": ws.state_since,
            "rules_digest": ws.rules_digest,
            "last_seen_at": ws.last_seen_at,
            "stale_notified": False,
        }
        for ws_id, ws in state.items()
        if ws.values is not None
    ]
    if applied:
        conn.execute(stmt["update_ws"], applied)
    seen = [
        {"k_id": ws_id, "last_seen_at": ws.last_seen_at, "stale_notified": False}
        for ws_id, ws in state.items()
        if ws.values is None
    ]
    if seen:
        conn.execute(stmt["update_ws"], seen)
    done = [r for r in results if r is not None]
    assert len(done) == len(items)  # every report got its answer above
    return done


def _apply(
    conn: Connection,
    stmt: dict[str, Any],
    item: IngestItem,
    finished: datetime,
    ws: _Ws,
    moves: list[dict[str, Any]],
) -> IngestResult:
    """Plan one report against `ws` (updated in place), write its rule rows if they change and
    queue its transitions in `moves`."""
    report = item.report
    if same_rules_apply(report, ws.rules_digest):
        plan = plan_same_rules(ws.state, report)  # a heartbeat: the rule rows stay as they are
    else:
        plan = _apply_rules(conn, stmt, item.workspace_id, report, ws.state, finished)
        if report.rules:
            ws.rules_digest = rules_digest(report.rules)
    moves += [
        {
            "workspace_id": item.workspace_id,
            "rule_id": t.rule_id,
            "from_state": t.from_state,
            "to_state": t.to_state,
            "before": t.before,
            "after": t.after,
            "message": t.message,
            "at": finished,
            "report_id": report.report_id,
        }
        for t in plan.transitions
    ]
    if plan.state != ws.state:
        ws.state_since = finished
    ws.state = plan.state
    ws.last_report_at = finished
    name, owner = ws.verified_name_owner or (report.workspace.name, report.workspace.owner)
    ws.values = {
        "name": name,
        "owner": owner,
        "agent_version": report.agent_version,
        "last_report_at": finished,
        "last_report_id": report.report_id,
        "last_kind": report.kind,
        "state": plan.state,
        "enforcement_level": report.enforcement_level,
        "key_enforcement_level": report.key_enforcement_level,
        "key_source": report.key_source,
        "desired_sha256": report.desired_sha256,
        "prompt_sha256": report.prompt_sha256,
        "exit_code": report.exit_code,
        "rules_total": plan.rules_total,
        "rules_failing": plan.rules_failing,
        "rules_corrected": plan.rules_corrected,
        "notes": json.dumps(list(report.notes)),
    }
    failing = [r.rule_id for r in report.rules if r.state in FAILING]
    return IngestResult(
        duplicate=False,
        applied=True,
        newly_drifted=plan.newly_drifted,
        workspace={
            "id": item.workspace_id,
            "name": name,
            "owner": owner,
            "state": plan.state,
            "failing_rules": failing[:50],
            "last_report_at": finished.isoformat(),
        },
    )


def _apply_rules(
    conn: Connection,
    stmt: dict[str, Any],
    workspace_id: str,
    report: Report,
    old_state: str,
    finished: datetime,
) -> IngestPlan:
    """Read the stored rules, plan against them and write the rule rows that change."""
    old = {
        row.rule_id: RuleRow(
            row.rule_id,
            row.target,
            row.state,
            row.before,
            row.after,
            row.message,
            row.state_since,
            row.failing_since,
            row.recovered_at,
        )
        for row in conn.execute(stmt["read_rules"], {"k_id": workspace_id})
    }
    plan = plan_ingest(old, old_state, report, finished)
    if plan.inserts:
        conn.execute(
            rule_states.insert(),
            [{"workspace_id": workspace_id, **_rule_values(r)} for r in plan.inserts],
        )
    if plan.updates:
        conn.execute(
            stmt["update_rule"],
            [
                {"k_ws": workspace_id, "k_rule": r.rule_id, **_rule_values(r, key=False)}
                for r in plan.updates
            ],
        )
    if plan.deletes:
        conn.execute(
            delete(rule_states).where(
                rule_states.c.workspace_id == workspace_id, rule_states.c.rule_id.in_(plan.deletes)
            )
        )
    return plan


def _rule_values(rule: RuleRow, key: bool = True) -> dict[str, Any]:
    values = {
        "target": rule.target,
        "state": rule.state,
        "before": rule.before,
        "after": rule.after,
        "message": rule.message,
        "state_since": rule.state_since,
        "failing_since": rule.failing_since,
        "recovered_at": rule.recovered_at,
    }
    return {"rule_id": rule.rule_id, **values} if key else values


# --- fleet -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class FleetFilter:
    status: str | None = None  # one of STATUSES
    drifted: bool | None = None
    stale: bool | None = None
    level: str | None = None
    owner: str | None = None
    mismatch: bool | None = None  # level requested ≠ level on the key
    q: str | None = None  # substring of id, name or owner
    limit: int = 500
    offset: int = 0


def _stale_expr(cutoff: datetime) -> ColumnElement[bool]:
    return or_(
        workspaces.c.last_seen_at < cutoff,
        and_(workspaces.c.last_seen_at.is_(None), workspaces.c.enrolled_at < cutoff),
    )


def _fresh_expr(cutoff: datetime) -> ColumnElement[bool]:
    """Not stale. Not `~_stale_expr`: with last_seen_at NULL that is NOT (NULL OR false), NULL,
    which would leave a workspace enrolled a moment ago out of both."""
    return or_(
        workspaces.c.last_seen_at >= cutoff,
        and_(workspaces.c.last_seen_at.is_(None), workspaces.c.enrolled_at >= cutoff),
    )


def _status_expr(cutoff: datetime) -> ColumnElement[str]:
    return case((_stale_expr(cutoff), literal("stale")), else_=workspaces.c.state)


def _mismatch_expr() -> ColumnElement[bool]:
    return and_(
        workspaces.c.key_enforcement_level.is_not(None),
        workspaces.c.key_enforcement_level != workspaces.c.enforcement_level,
    )


def counts(conn: Connection, now: datetime, stale_after_s: int) -> dict[str, int]:
    """Workspaces per status (stale overrides the last known state), plus total. Two queries
    that read only indexes (one GROUP BY of a CASE read every row: 25 ms at 50,000)."""
    cutoff = now - timedelta(seconds=stale_after_s)
    out = {s: 0 for s in STATUSES}
    out["stale"] = conn.execute(select(func.count()).where(_stale_expr(cutoff))).scalar_one()
    for state, n in conn.execute(
        select(workspaces.c.state, func.count())
        .where(_fresh_expr(cutoff))
        .group_by(workspaces.c.state)
    ):
        out[state] = out.get(state, 0) + n
    out["total"] = sum(out[s] for s in STATUSES)
    return out


def fleet(conn: Connection, flt: FleetFilter, now: datetime, stale_after_s: int) -> dict[str, Any]:
    """The fleet list: counts for the whole fleet, then the workspaces that match `flt`."""
    cutoff = now - timedelta(seconds=stale_after_s)
    status = _status_expr(cutoff)
    where: list[ColumnElement[bool]] = []
    if flt.status:
        where.append(status == flt.status)
    if flt.drifted is not None:
        where.append(
            workspaces.c.state == "drifted" if flt.drifted else workspaces.c.state != "drifted"
        )
    if flt.stale is not None:
        where.append(_stale_expr(cutoff) if flt.stale else _fresh_expr(cutoff))
    if flt.level:
        where.append(workspaces.c.enforcement_level == flt.level)
    if flt.owner:
        where.append(workspaces.c.owner == flt.owner)
    if flt.mismatch is not None:
        where.append(_mismatch_expr() if flt.mismatch else ~_mismatch_expr())
    if flt.q:
        pattern = "%" + flt.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        where.append(
            or_(
                *(
                    col.ilike(pattern, escape="\\")
                    for col in (workspaces.c.id, workspaces.c.name, workspaces.c.owner)
                )
            )
        )
    order = case(*((status == s, i) for i, s in enumerate(STATUSES)), else_=len(STATUSES))
    # The page's ids first (sorted from an index, not from the wide rows), then their rows.
    ids = (
        conn.execute(
            select(workspaces.c.id)
            .where(*where)
            .order_by(order, workspaces.c.name, workspaces.c.id)
            .limit(flt.limit)
            .offset(flt.offset)
        )
        .scalars()
        .all()
    )
    cols = [c for c in workspaces.c if c.name not in ("token_hash", "notes", "rules_digest")]
    found = (
        {
            r["id"]: r
            for r in conn.execute(
                select(*cols, status.label("status")).where(workspaces.c.id.in_(ids))
            ).mappings()
        }
        if ids
        else {}
    )
    rows = [found[i] for i in ids if i in found]
    matched = conn.execute(select(func.count()).select_from(workspaces).where(*where)).scalar_one()
    failing = _failing_rules(conn, [r["id"] for r in rows])
    updated = conn.execute(select(func.max(workspaces.c.last_seen_at))).scalar_one()
    return {
        "generated_at": now,
        "updated_at": updated,
        "stale_after_s": stale_after_s,
        "counts": counts(conn, now, stale_after_s),
        "matched": matched,
        "workspaces": [_workspace_out(r, failing.get(r["id"], [])) for r in rows],
    }


def _failing_rules(conn: Connection, ids: Sequence[str]) -> dict[str, list[tuple[str, str]]]:
    """workspace id → [(rule id, state)] of its failing rules (drift first, then error)."""
    out: dict[str, list[tuple[str, str]]] = {}
    if not ids:
        return out
    for chunk_start in range(0, len(ids), 500):  # stay under bind-parameter limits
        chunk = ids[chunk_start : chunk_start + 500]
        for row in conn.execute(
            select(rule_states.c.workspace_id, rule_states.c.rule_id, rule_states.c.state)
            .where(rule_states.c.workspace_id.in_(chunk), rule_states.c.state.in_(sorted(FAILING)))
            .order_by(rule_states.c.workspace_id, rule_states.c.state, rule_states.c.rule_id)
        ):
            out.setdefault(row.workspace_id, []).append((row.rule_id, row.state))
    return out


def _workspace_out(row: Any, failing: list[tuple[str, str]]) -> dict[str, Any]:
    level, key_level = row["enforcement_level"], row["key_enforcement_level"]
    return {
        "id": row["id"],
        "name": row["name"],
        "owner": row["owner"],
        "status": row["status"],
        "state": row["state"],
        "stale": row["status"] == "stale",
        "state_since": row["state_since"],
        "enforcement_level": level,
        "key_enforcement_level": key_level,
        "level_mismatch": key_level is not None and key_level != level,
        "rules_total": row["rules_total"],
        "rules_failing": row["rules_failing"],
        "rules_corrected": row["rules_corrected"],
        "failing_rules": [rule_id for rule_id, _ in failing[:FAILING_RULES_SHOWN]],
        "error_rules": [rule_id for rule_id, state in failing if state == "error"],
        "failing_rules_more": max(0, len(failing) - FAILING_RULES_SHOWN),
        "agent_version": row["agent_version"],
        "last_seen_at": row["last_seen_at"],
        "last_report_at": row["last_report_at"],
        "last_kind": row["last_kind"],
        "exit_code": row["exit_code"],
        "enrolled_at": row["enrolled_at"],
        "token_revoked_at": row["token_revoked_at"],
        "identity_mode": row["identity_mode"] or "enrollment-secret",
        "template_name": row["template_name"],
    }


def workspace_detail(
    conn: Connection, workspace_id: str, now: datetime, stale_after_s: int, history: int = 200
) -> dict[str, Any] | None:
    """One workspace: summary, every rule's state and episode, its transitions (newest first)."""
    status = _status_expr(now - timedelta(seconds=stale_after_s))
    cols = [c for c in workspaces.c if c.name != "token_hash"]
    row = (
        conn.execute(select(*cols, status.label("status")).where(workspaces.c.id == workspace_id))
        .mappings()
        .first()
    )
    if row is None:
        return None
    rules = conn.execute(select(rule_states).where(rule_states.c.workspace_id == workspace_id))
    order = {"drift": 0, "error": 1, "corrected": 2, "compliant": 3}
    rule_list = sorted(
        ({k: v for k, v in r._mapping.items() if k != "workspace_id"} for r in rules),
        key=lambda r: (order.get(r["state"], 9), r["rule_id"]),
    )
    moves = (
        conn.execute(
            select(transitions)
            .where(transitions.c.workspace_id == workspace_id)
            .order_by(transitions.c.id.desc())
            .limit(history)
        )
        .mappings()
        .all()
    )
    recent = (
        conn.execute(
            select(
                reports.c.report_id,
                reports.c.kind,
                reports.c.received_at,
                reports.c.finished_at,
                reports.c.exit_code,
            )
            .where(reports.c.workspace_id == workspace_id)
            .order_by(reports.c.finished_at.desc())
            .limit(20)
        )
        .mappings()
        .all()
    )
    out = _workspace_out(
        row, [(r["rule_id"], r["state"]) for r in rule_list if r["state"] in FAILING]
    )
    out.update(
        {
            "key_source": row["key_source"],
            "desired_sha256": row["desired_sha256"],
            "prompt_sha256": row["prompt_sha256"],
            "last_report_id": row["last_report_id"],
            "notes": json.loads(row["notes"] or "[]"),
            "token_issued_at": row["token_issued_at"],
            "failing_rules": [r["rule_id"] for r in rule_list if r["state"] in FAILING],
            "failing_rules_more": 0,
            "rules": rule_list,
            "transitions": [{k: v for k, v in m.items() if k != "workspace_id"} for m in moves],
            "reports": [dict(r) for r in recent],
            "stale_after_s": stale_after_s,
        }
    )
    return out


# --- maintenance -----------------------------------------------------------------------------


def mark_newly_stale(conn: Connection, now: datetime, stale_after_s: int) -> list[dict[str, Any]]:
    """Flag workspaces that went stale since the last scan; each is returned once per silence."""
    cutoff = now - timedelta(seconds=stale_after_s)
    rows = (
        conn.execute(
            update(workspaces)
            .where(_stale_expr(cutoff), workspaces.c.stale_notified.is_(False))
            .values(stale_notified=True)
            .returning(
                workspaces.c.id,
                workspaces.c.name,
                workspaces.c.owner,
                workspaces.c.state,
                workspaces.c.last_seen_at,
            )
        )
        .mappings()
        .all()
    )
    return [
        {
            "id": r["id"],
            "name": r["name"],
            "owner": r["owner"],
            "state": r["state"],
            "last_seen_at": r["last_seen_at"].isoformat() if r["last_seen_at"] else None,
        }
        for r in rows
    ]


def prune_reports(conn: Connection, before: datetime) -> int:
    """Forget report ids older than the retention (they only serve the duplicate check)."""
    return conn.execute(delete(reports).where(reports.c.received_at < before)).rowcount or 0
