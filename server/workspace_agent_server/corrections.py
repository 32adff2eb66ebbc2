"""Corrections from `workspace-agent watch`: locked values a workspace put back between its runs.

A report says how a workspace is at a check; a correction says that, at a given moment, someone
or something changed a locked value (e.g. the "Use AI Features with Copilot" palette command
deleted `chat.disableAIFeatures`) and the watcher put it back within a second. They are kept
apart from the rule states (a correction does not say anything about the other rules), stored
once per `correction_id`, bounded per workspace, and shown on the workspace's page.

Same auth as a report: the workspace's own token, checked again inside the writing transaction.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Connection, delete, func, select

from workspace_agent import wire

from . import queries
from .db import corrections, write_tx
from .errors import ApiError, documented
from .routes import _refused, ctx_of, parse, read_body, require_workspace

if TYPE_CHECKING:
    from .app import Ctx

router = APIRouter()
MAX_BODY_BYTES = 256 * 1024
KEEP_PER_WORKSPACE = 1000  # older corrections of a workspace are deleted beyond this
SHOWN = 50


def store(conn: Connection, workspace_id: str, batch: wire.CorrectionBatch, now: datetime) -> int:
    """Insert the batch's corrections not stored yet; returns how many were new."""
    rows = [
        {
            "workspace_id": workspace_id,
            "correction_id": c.correction_id,
            "rule_id": c.rule_id,
            "target": c.target,
            "before": c.before,
            "after": c.after,
            "at": queries.utc(c.at),
            "restored": c.restored,
            "latency_ms": c.latency_ms,
            "message": c.message,
            "received_at": now,
        }
        for c in batch.corrections
    ]
    statement = (
        queries._insert(conn, corrections)
        .values(rows)
        .on_conflict_do_nothing(index_elements=["workspace_id", "correction_id"])
        .returning(corrections.c.id)  # only the new rows: a resent correction is not counted
    )
    stored = len(conn.execute(statement).all())
    if stored:
        _trim(conn, workspace_id)
    return stored


def _trim(conn: Connection, workspace_id: str) -> None:
    cutoff = conn.execute(
        select(corrections.c.id)
        .where(corrections.c.workspace_id == workspace_id)
        .order_by(corrections.c.id.desc())
        .offset(KEEP_PER_WORKSPACE)
        .limit(1)
    ).scalar_one_or_none()
    if cutoff is not None:
        conn.execute(
            delete(corrections).where(
                corrections.c.workspace_id == workspace_id, corrections.c.id <= cutoff
            )
        )


def recent(conn: Connection, workspace_id: str, limit: int = SHOWN) -> dict[str, Any]:
    """The newest corrections of a workspace, and how many there are in all."""
    total = conn.execute(
        select(func.count()).select_from(corrections).where(corrections.c.workspace_id == workspace_id)
    ).scalar_one()
    rows = (
        conn.execute(
            select(
                corrections.c.correction_id,
                corrections.c.rule_id,
                corrections.c.target,
                corrections.c.before,
                corrections.c.after,
                corrections.c.at,
                corrections.c.restored,
                corrections.c.latency_ms,
                corrections.c.message,
                corrections.c.received_at,
            )
            .where(corrections.c.workspace_id == workspace_id)
            .order_by(corrections.c.id.desc())
            .limit(limit)
        )
        .mappings()
        .all()
    )
    return {"total": int(total), "items": [dict(r) for r in rows]}


def prune(conn: Connection, before: datetime) -> int:
    """Forget corrections received before the report retention."""
    return conn.execute(delete(corrections).where(corrections.c.received_at < before)).rowcount or 0


@router.post(
    wire.CORRECTIONS_PATH,
    response_model=wire.CorrectionsAccepted,
    tags=["workspace"],
    summary="Send corrections made by `workspace-agent watch`",
    responses=documented(401, 403, 413, 422),
)
async def post_corrections(request: Request) -> JSONResponse:
    """`Authorization: Bearer <workspace token>`. A correction id already stored is not stored
    again (`stored` counts the new ones)."""
    ctx = ctx_of(request)
    workspace_id, hashed = await require_workspace(request)
    body = await read_body(request, MAX_BODY_BYTES, True)
    batch = parse(wire.CorrectionBatch, body, "the corrections", True)
    if batch.wire_version != wire.WIRE_VERSION:
        raise ApiError(
            422,
            "wire_version",
            f"corrections wire_version {batch.wire_version} is not understood here (this server "
            f"speaks {wire.WIRE_VERSION}): upgrade the server or the agent",
            count_as="invalid",
        )
    if batch.workspace.id != workspace_id:
        raise ApiError(
            403,
            "wrong_workspace",
            "this token belongs to another workspace: a workspace token can only send corrections "
            "for its own workspace",
            count_as="wrong_workspace",
        )
    stored = await ctx.run_db(_store_tx, ctx, workspace_id, hashed, batch)
    if isinstance(stored, str):  # revoked or re-enrolled since the token was let in
        ctx.tokens.discard(hashed)
        raise _refused(stored)
    return JSONResponse({"batch_id": batch.batch_id, "stored": stored})


def _store_tx(ctx: Ctx, workspace_id: str, hashed: str, batch: wire.CorrectionBatch) -> int | str:
    with write_tx(ctx.engine) as conn:
        owner = queries.token_owner(conn, hashed)
        if owner is None or owner.workspace_id != workspace_id:
            return "unauthorized"
        if owner.revoked:
            return "revoked"
        return store(conn, workspace_id, batch, ctx.clock())
