"""The JSON API: thin handlers (authenticate → read a bounded body → validate → query → respond).

Auth order for a report: the token first (cheap, before reading any body; a token seen valid
before is answered from memory, see token_cache.py), then the size, then validation, then "this
token may write this workspace", and last the token once more inside the transaction that writes
(so a revoked token never writes, whatever a cache says). Reports are written by the group-commit
writer (writer.py) and answered after their transaction commits. Each refusal is counted by reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from coder_identity import AGENT_TOKEN_HEADER, CoderUnavailable, IdentityRefused, TooManyLookups
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ValidationError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from workspace_agent import wire

from . import auth, outbox, queries, replicas, sessions
from .db import write_tx
from .errors import ApiError, describe_validation, documented
from .limits import ENROLL_MAX_BYTES, source, too_many
from .metrics import render_replicas

if TYPE_CHECKING:
    from .app import Ctx

router = APIRouter()
log = logging.getLogger("workspace_agent_server")
M = TypeVar("M", bound=BaseModel)
MAX_OFFSET = (
    10_000_000  # beyond any fleet; unbounded, a huge offset overflowed the database's integer
)
Identity = Literal["admin", "enrollment", "workspace", "revoked", "unknown"]


def ctx_of(request: Request) -> Ctx:
    return request.app.state.ctx  # type: ignore[no-any-return]


# --- auth ------------------------------------------------------------------------------------


def _lookup(ctx: Ctx, hashed: str) -> queries.TokenOwner | None:
    with ctx.engine.connect() as conn:
        return queries.token_owner(conn, hashed)


async def identify(ctx: Ctx, token: str) -> tuple[Identity, str | None]:
    """What kind of credential `token` is (and for a workspace token, whose)."""
    hashed = auth.token_hash(token) if token.startswith(auth.WORKSPACE_TOKEN_PREFIX) else None
    if hashed is not None and (cached := ctx.tokens.get(hashed)) is not None:
        return "workspace", cached
    if auth.is_admin(token, ctx.settings.admin_tokens):
        return "admin", None
    if auth.matches(token, ctx.settings.enrollment_secret):
        return "enrollment", None
    if hashed is None:
        return "unknown", None
    generation = ctx.tokens.generation
    owner = await ctx.run_db(_lookup, ctx, hashed)
    if owner is None:
        return "unknown", None
    if owner.revoked:
        return "revoked", owner.workspace_id
    ctx.tokens.put(hashed, owner.workspace_id, generation)
    return "workspace", owner.workspace_id


_BEARER = {"WWW-Authenticate": "Bearer"}


def _session_of(ctx: Ctx, cookie: str | None) -> sessions.Session | None:
    with ctx.engine.connect() as conn:
        return sessions.lookup(conn, cookie, ctx.settings.admin_tokens, ctx.clock())


async def require_admin(request: Request, changes_state: bool = False) -> None:
    """Admin token as Bearer, or the session cookie of the login form; nothing else.

    A cookie-signed request that changes something must also come from an allowed Origin and send
    the session's CSRF token (`X-CSRF-Token`); a Bearer token is never sent by a browser on its
    own, so it needs neither. The session is kept on `request.state.session` for the pages."""
    ctx = ctx_of(request)
    if not ctx.settings.admin_tokens:
        raise ApiError(
            503,
            "admin_off",
            "the admin API is off: start the server with "
            "DRIFT_ADMIN_TOKENS set to one or more admin tokens",
        )
    token = auth.bearer(request.headers.get("authorization"))
    if token is None:
        cookie = request.cookies.get(auth.SESSION_COOKIE)
        session = await ctx.run_db(_session_of, ctx, cookie) if cookie else None
        if session is not None:
            if changes_state:
                check_csrf(request, session, request.headers.get(sessions.CSRF_HEADER))
            request.state.session = session
            return
        raise ApiError(
            401,
            "unauthorized",
            "this needs an admin token: send 'Authorization: Bearer <admin token>'",
            headers=_BEARER,
        )
    kind, _ = await identify(ctx, token)
    if kind == "admin":
        return
    if kind in ("workspace", "revoked", "enrollment"):
        what = "the enrollment secret" if kind == "enrollment" else "a workspace token"
        raise ApiError(
            403, "forbidden", f"this needs an admin token; {what} cannot read or change the fleet"
        )
    raise ApiError(401, "unauthorized", "the token is not a valid admin token", headers=_BEARER)


def check_csrf(request: Request, session: sessions.Session, sent: str | None) -> None:
    """Refuse (403 csrf) a cookie-signed change from another site or without the CSRF token."""
    ctx = ctx_of(request)
    problem = sessions.csrf_problem(
        session,
        sent,
        request.headers.get("origin"),
        request.headers.get("referer"),
        request.headers.get("host"),
        ctx.settings.admin_origins,
    )
    if problem is not None:
        raise ApiError(403, "csrf", f"refused: {problem}")


async def require_workspace(request: Request) -> tuple[str, str]:
    """The workspace whose token this is, and the token's hash; refuses admin tokens, the secret
    and revoked tokens."""
    ctx = ctx_of(request)
    token = auth.bearer(request.headers.get("authorization"))
    if token is None:
        raise ApiError(
            401,
            "unauthorized",
            "reports need the workspace token from enrollment: "
            "send 'Authorization: Bearer <workspace token>'",
            count_as="unauthorized",
            headers=_BEARER,
        )
    kind, workspace_id = await identify(ctx, token)
    if kind == "workspace":
        assert workspace_id is not None
        return workspace_id, auth.token_hash(token)
    if kind == "admin":
        raise ApiError(
            403,
            "forbidden",
            "admin tokens cannot post reports; a report must come with its workspace's own token",
            count_as="forbidden",
        )
    if kind == "enrollment":
        raise ApiError(
            403,
            "forbidden",
            "the enrollment secret cannot post reports: enroll at "
            f"{wire.ENROLL_PATH} first and use the workspace token it returns",
            count_as="forbidden",
        )
    raise _refused(kind)


def _refused(kind: str) -> ApiError:
    """The 401 of a revoked or unknown workspace token."""
    if kind == "revoked":
        return ApiError(
            401,
            "revoked",
            "this workspace token was revoked by an admin; enroll again to get a new one",
            count_as="revoked",
            headers=_BEARER,
        )
    return ApiError(
        401,
        "unauthorized",
        "unknown workspace token (the server may have been "
        "reset or the workspace re-enrolled): enroll again",
        count_as="unauthorized",
        headers=_BEARER,
    )


# --- bodies ----------------------------------------------------------------------------------


async def read_body(request: Request, limit: int, count: bool) -> bytes:
    """The body, refused with 413 as soon as it is known to be larger than `limit`."""
    too_big = ApiError(
        413,
        "too_large",
        f"the body is larger than this server accepts "
        f"({limit} bytes); send fewer or shorter rule results",
        count_as="too_large" if count else None,
    )
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_big
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


def parse(model: type[M], body: bytes, what: str, count: bool) -> M:
    try:
        # strict, as the schema says: no "0" for 0, no number for a time
        parsed = model.model_validate_json(body, strict=True)
    except ValidationError as exc:
        detail, errors = describe_validation(what, exc.errors(include_input=False))
        raise ApiError(
            422, "invalid", detail, count_as="invalid" if count else None, extra={"errors": errors}
        ) from exc
    # JSON can carry a NUL only as the escape \u0000 (the parser refuses a raw one), so only
    # a body holding that text is walked: the walk cost ~40 us, a tenth of a report's time.
    where = _nul_at(parsed.model_dump()) if b"\\u0000" in body else None
    if where is not None:
        raise ApiError(
            422,
            "invalid",
            f"{what} is not valid: {where}: text must not contain NUL characters",
            count_as="invalid" if count else None,
            extra={"errors": [{"loc": where, "msg": "text must not contain NUL characters"}]},
        )
    return parsed


def _nul_at(value: Any, where: str = "") -> str | None:
    """Where a NUL character sits in parsed JSON (PostgreSQL cannot store one), or None."""
    if isinstance(value, str):
        return (where or "(body)") if "\x00" in value else None
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    for key, item in items:
        found = _nul_at(item, f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def no_nul(name: str, value: str | None) -> None:
    """Query parameters: a NUL character is refused (422) before it reaches the database."""
    if value is not None and "\x00" in value:
        raise ApiError(
            422,
            "invalid",
            f"the request is not valid: {name}: text must not contain NUL characters",
            extra={
                "errors": [{"loc": f"query.{name}", "msg": "text must not contain NUL characters"}]
            },
        )


def _first_repeat(ids: Iterable[str]) -> str | None:
    seen: set[str] = set()
    for rule_id in ids:
        if rule_id in seen:
            return rule_id
        seen.add(rule_id)
    return None


# --- routes ----------------------------------------------------------------------------------


@router.post(
    wire.ENROLL_PATH,
    response_model=wire.EnrollResponse,
    tags=["workspace"],
    summary="Trade the workspace's Coder agent token (or the enrollment secret) for a workspace token",
    responses=documented(401, 403, 413, 422, 429, 503),
)
async def enroll(request: Request) -> wire.EnrollResponse:
    """`Coder-Agent-Token: <agent token>` (preferred: the server asks Coder who that is) and/or
    `Authorization: Bearer <enrollment secret>` (the weaker fallback). Returns a new token for the
    workspace (an earlier token of the same workspace stops working). Only a hash is stored.

    A verified enrollment binds the workspace to Coder's identity: from then on the shared secret
    alone can no longer enroll that workspace id (it could otherwise take its reports over)."""
    ctx = ctx_of(request)
    settings = ctx.settings
    if settings.enrollment_secret is None and ctx.coder is None:
        raise ApiError(
            503,
            "enrollment_off",
            "enrollment is off: start the server with DRIFT_CODER_URL and DRIFT_CODER_API_TOKEN "
            "(enrollment by agent token) and/or DRIFT_ENROLLMENT_SECRET set",
        )
    agent_token = (request.headers.get(AGENT_TOKEN_HEADER) or "").strip()
    bearer = auth.bearer(request.headers.get("authorization"))
    secret_ok = bearer is not None and auth.matches(bearer, settings.enrollment_secret)
    if not (secret_ok or (agent_token and ctx.coder is not None)):
        if agent_token:
            detail = (
                "this drift server cannot verify Coder agent tokens (no DRIFT_CODER_URL), so "
                "enrollment needs the enrollment secret: send 'Authorization: Bearer <enrollment "
                "secret>' (DRIFT_ENROLLMENT_SECRET)"
            )
        elif ctx.coder is not None and settings.enrollment_secret is None:
            detail = (
                f"enrollment needs the workspace's Coder agent token in the {AGENT_TOKEN_HEADER} "
                "header (CODER_AGENT_TOKEN)"
            )
        else:
            detail = (
                f"enrollment needs the workspace's Coder agent token ({AGENT_TOKEN_HEADER} header) or "
                "the enrollment secret ('Authorization: Bearer <enrollment secret>'; check "
                "DRIFT_ENROLLMENT_SECRET on the server and the workspace's setting)"
            )
        raise ApiError(401, "unauthorized", detail, headers=_BEARER)
    limits = ctx.limits
    assert limits is not None
    address = source(request)
    req = parse(
        wire.EnrollRequest,
        await read_body(request, ENROLL_MAX_BYTES, False),
        "the enrollment request",
        False,
    )
    who, mode, template = req.workspace, "enrollment-secret", None
    if agent_token and ctx.coder is not None:
        try:
            verified = await ctx.coder.verify(
                agent_token, req.workspace.id, lambda: limits.coder_lookups.check(address)
            )
        except TooManyLookups as exc:
            raise too_many(exc.retry_after, "identity checks from this address") from None
        except IdentityRefused as exc:
            ctx.metrics.count_enroll_refused(exc.reason)
            raise ApiError(403, "identity_refused", exc.message) from None
        except CoderUnavailable as exc:
            if not secret_ok or settings.require_agent_token:
                raise ApiError(
                    503,
                    "coder_unavailable",
                    f"cannot verify the workspace with Coder: {exc.message}",
                ) from None
            log.warning("enrolling %s with the shared secret: %s", req.workspace.id, exc.message)
        else:
            who = wire.WorkspaceIdentity(
                id=req.workspace.id, name=verified.workspace_name, owner=verified.owner
            )
            mode, template = "coder-agent-token", verified.template_name or None
    if mode == "enrollment-secret":
        if settings.require_agent_token:
            raise ApiError(
                403,
                "agent_token_required",
                "this drift server enrolls only workspaces that Coder vouches for: send the "
                f"workspace's CODER_AGENT_TOKEN in the {AGENT_TOKEN_HEADER} header",
            )
        # The shared secret says nothing about who sends it: limited per source address.
        if (wait := limits.enroll.check(f"address:{address}")) is not None:
            raise too_many(wait, "enrollments with the shared secret from here")
    elif (wait := limits.enroll.check(f"workspace:{req.workspace.id}")) is not None:
        raise too_many(wait, f"enrollments of workspace {req.workspace.id!r}")
    new_token = auth.new_workspace_token()

    def tx() -> bool:
        with write_tx(ctx.engine) as conn:
            return queries.enroll(
                conn,
                who,
                req.agent_version,
                auth.token_hash(new_token),
                ctx.clock(),
                identity_mode=mode,
                template_name=template,
            )

    # One statement decides: a shared-secret enrollment of a workspace that enrolled verified
    # (even a moment ago, in another request) writes nothing (queries.enroll).
    if not await ctx.run_db(tx):
        ctx.metrics.count_enroll_refused("takeover")
        raise ApiError(
            403,
            "identity_required",
            f"workspace {req.workspace.id!r} enrolled with its Coder identity; the shared "
            "enrollment secret cannot enroll it again: enroll with its CODER_AGENT_TOKEN",
        )
    ctx.tokens.forget(req.workspace.id)  # the workspace's earlier token stops working
    return wire.EnrollResponse(
        workspace_id=req.workspace.id,
        workspace_token=new_token,
        heartbeat_interval_s=settings.heartbeat_interval_s,
        identity_mode=mode,  # type: ignore[arg-type]
    )


@router.post(
    wire.REPORTS_PATH,
    response_model=wire.ReportAccepted,
    tags=["workspace"],
    summary="Send one drift report",
    responses=documented(401, 403, 413, 422),
)
async def post_report(request: Request) -> JSONResponse:
    """`Authorization: Bearer <workspace token>`. A report id already stored → 200 with
    `duplicate: true` and nothing changes. Answered once the report is committed (reports that
    arrive together share one transaction)."""
    ctx = ctx_of(request)
    started = time.perf_counter()
    workspace_id, hashed = await require_workspace(request)
    body = await read_body(request, ctx.settings.max_body_bytes, True)
    report = parse(wire.Report, body, "the report", True)
    if report.wire_version != wire.WIRE_VERSION:
        raise ApiError(
            422,
            "wire_version",
            f"report wire_version {report.wire_version} is not "
            f"understood here (this server speaks {wire.WIRE_VERSION}): upgrade the "
            "server or the agent",
            count_as="invalid",
        )
    repeated = _first_repeat(r.rule_id for r in report.rules)
    if repeated is not None:
        raise ApiError(
            422,
            "invalid",
            f"the report is not valid: rule {repeated!r} appears more than once",
            count_as="invalid",
        )
    if report.workspace.id != workspace_id:
        raise ApiError(
            403,
            "wrong_workspace",
            "this token belongs to another workspace: a "
            "workspace token can only report for its own workspace",
            count_as="wrong_workspace",
        )

    result = await ctx.writer.submit(workspace_id, hashed, report, ctx.clock())
    if result.refused is not None:  # revoked or re-enrolled since the token was let in
        ctx.tokens.discard(hashed)
        raise _refused(result.refused)
    ctx.metrics.observe_ingest(time.perf_counter() - started, result.duplicate)
    # A notice of a newly drifted workspace was stored with the report (writer.py, outbox.py).
    # The answer is built here (not by FastAPI's response_model, which validates it again).
    return JSONResponse({"report_id": report.report_id, "duplicate": result.duplicate})


@router.get(
    wire.WORKSPACES_PATH,
    tags=["admin"],
    summary="The fleet, with counts and filters",
    response_class=JSONResponse,
    responses=documented(401, 403, 422, 503),
)
async def list_workspaces(
    request: Request,
    status: Literal["compliant", "drifted", "error", "stale", "unknown"] | None = None,
    drifted: bool | None = None,
    stale: bool | None = None,
    level: str | None = Query(default=None, max_length=50),
    owner: str | None = Query(default=None, max_length=200),
    mismatch: bool | None = None,
    q: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=500, ge=1, le=5000),
    offset: int = Query(default=0, ge=0, le=MAX_OFFSET),
) -> Response:
    """Counts are for the whole fleet (stale overrides the last state); `updated_at` is when
    the latest report arrived. `drifted` is the last known state, also for stale workspaces."""
    await require_admin(request)
    for name, value in (("level", level), ("owner", owner), ("q", q)):
        no_nul(name, value)
    ctx = ctx_of(request)
    flt = queries.FleetFilter(
        status=status,
        drifted=drifted,
        stale=stale,
        level=level or None,
        owner=owner or None,
        mismatch=mismatch,
        q=q or None,
        limit=limit,
        offset=offset,
    )
    body = await ctx.run_db(lambda: json_bytes(fleet_data(ctx, flt)))
    return Response(body, media_type="application/json")


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON")


def json_bytes(data: Any) -> bytes:
    """What FastAPI would send for `data` (datetimes as ISO 8601, like its jsonable_encoder),
    made here so that big answers are encoded off the event loop (and ~5x faster)."""
    return json.dumps(
        data, default=_iso, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    ).encode()


def fleet_data(ctx: Ctx, flt: queries.FleetFilter) -> dict[str, Any]:
    with ctx.engine.connect() as conn:
        return queries.fleet(conn, flt, ctx.clock(), ctx.settings.stale_after_s)


def detail_data(ctx: Ctx, workspace_id: str) -> dict[str, Any] | None:
    from .corrections import recent

    with ctx.engine.connect() as conn:
        found = queries.workspace_detail(conn, workspace_id, ctx.clock(), ctx.settings.stale_after_s)
        if found is not None:
            found["corrections"] = recent(conn, workspace_id)
        return found


@router.get(
    wire.WORKSPACES_PATH + "/{workspace_id:path}",
    tags=["admin"],
    summary="One workspace: rule states, first failing, transitions",
    response_class=JSONResponse,
    responses=documented(401, 403, 404, 422, 503),
)
async def get_workspace(request: Request, workspace_id: str) -> Response:
    await require_admin(request)
    ctx = ctx_of(request)

    def answer() -> bytes | None:
        if "\x00" in workspace_id:  # no stored id holds one (reports with NUL are refused)
            return None
        found = detail_data(ctx, workspace_id)
        return None if found is None else json_bytes(found)

    body = await ctx.run_db(answer)
    if body is None:
        raise ApiError(404, "not_found", f"no workspace with id {workspace_id!r} has enrolled")
    return Response(body, media_type="application/json")


@router.post(
    wire.WORKSPACES_PATH + "/{workspace_id:path}/revoke",
    tags=["admin"],
    summary="Revoke a workspace's token",
    responses=documented(401, 403, 404, 422, 503),
)
async def revoke_workspace(request: Request, workspace_id: str) -> dict[str, Any]:
    """Later reports with that token get 401. The workspace can enroll again with the enrollment
    secret (rotate the secret to keep it out for good)."""
    await require_admin(request, changes_state=True)
    ctx = ctx_of(request)

    def tx() -> Any:
        with write_tx(ctx.engine) as conn:
            return queries.revoke(conn, workspace_id, ctx.clock())

    revoked_at = await ctx.run_db(tx) if "\x00" not in workspace_id else None
    ctx.tokens.forget(workspace_id)
    if revoked_at is None:
        raise ApiError(404, "not_found", f"no workspace with id {workspace_id!r} has enrolled")
    return {"workspace_id": workspace_id, "revoked": True, "revoked_at": revoked_at}


@router.get(
    "/health",
    tags=["ops"],
    summary="Liveness and database check",
    responses={503: {"description": "the database cannot be reached"}},
)
async def health(request: Request) -> JSONResponse:
    ctx = ctx_of(request)

    def ping() -> None:
        with ctx.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    try:
        await ctx.run_db(ping)
    except SQLAlchemyError as exc:
        return JSONResponse(
            {
                "status": "degraded",
                "db": "unreachable",
                "detail": str(getattr(exc, "orig", exc)).splitlines()[0],
            },
            503,
        )
    return JSONResponse({"status": "ok", "db": "ok"})


@router.get(
    "/metrics",
    tags=["ops"],
    summary="Prometheus metrics (Bearer DRIFT_METRICS_TOKEN or an admin token)",
    responses={
        200: {"description": "Prometheus text", "content": {"text/plain": {}}},
        **documented(401, 403, 503),  # JSON error bodies, like every other route
    },
)
async def metrics(request: Request) -> PlainTextResponse:
    ctx = ctx_of(request)
    token = auth.bearer(request.headers.get("authorization"))
    if token is None or not auth.matches(token, ctx.settings.metrics_token):
        await require_admin(request)

    def read() -> tuple[dict[str, int], dict[str, int], list[dict[str, Any]]]:
        with ctx.engine.connect() as conn:
            return (
                queries.counts(conn, ctx.clock(), ctx.settings.stale_after_s),
                outbox.counts(conn),
                replicas.read_all(conn),
            )

    by_state, notices, processes = await ctx.run_db(read)
    # This process's counters are fresh; the others' are as of their last heartbeat.
    counters = {p["id"]: p["counters"] for p in processes} | {
        ctx.replica_id: replicas.counters_of(ctx)
    }
    alive = {p["id"]: p["alive"] for p in processes} | {ctx.replica_id: True}
    body = ctx.metrics.render(
        by_state,
        notices["waiting"] if ctx.notifier is not None or notices["waiting"] else None,
        {
            "batches": ctx.writer.stats.batches,
            "reports": ctx.writer.stats.reports,
            "waiting": ctx.writer.waiting,
        },
    )
    body += (
        "# HELP drift_webhook_failed_notices Notices given up after the last retry (kept for "
        "the retention days).\n# TYPE drift_webhook_failed_notices gauge\n"
        f"drift_webhook_failed_notices {notices['failed']}\n"
    )
    return PlainTextResponse(
        body + render_replicas(counters, alive),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
