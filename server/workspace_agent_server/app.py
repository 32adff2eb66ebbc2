"""The app factory: `create_app(settings)` → a FastAPI app on its own database.

The schema is created/migrated here (so a bad database URL fails at start with a sentence);
the webhook sender and the maintenance loop (stale scan, pruning) run in the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import anyio.to_thread
from coder_identity import CoderIdentity
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from http_guard.body_limit import BodyLimit
from sqlalchemy import Engine
from starlette.exceptions import HTTPException as StarletteHTTPException

from workspace_agent import wire

from . import __version__, admin_pages, api_docs, busy, corrections, disconnect, outbox, queries, replicas, routes, sessions, spend_pages, spend_pull
from .db import make_engine, migrate, write_tx
from .errors import ApiError, describe_validation
from .limits import Limits, body_error, body_limit_for, make_limits
from .metrics import Metrics
from .settings import Settings
from .token_cache import TokenCache
from .webhook import Notifier
from .writer import Writer

log = logging.getLogger("workspace_agent_server")
Clock = Callable[[], datetime]
T = TypeVar("T")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Ctx:
    """What handlers need, kept on `app.state.ctx`."""

    settings: Settings
    engine: Engine
    metrics: Metrics
    clock: Clock
    writer: Writer
    tokens: TokenCache
    notifier: Notifier | None = None
    replica_id: str = ""  # this process in drift_replicas and as a webhook sender
    coder: CoderIdentity | None = None  # set when the server may ask Coder who enrolls
    db_limiter: anyio.CapacityLimiter | None = None  # made on first use: it needs the running loop
    limits: Limits | None = None  # rate limits (limits.py)
    litellm: Any = None  # spend_litellm.LiteLLM when spend is pulled (DRIFT_LITELLM_URL)
    spend_cache: Any = None  # spend_queries.Cache: period sums, reused until the next pull
    spend_task: Any = None  # an admin's "pull now" while it runs
    spend_warm_generation: int = -1  # the pull generation this process's cache was warmed for

    async def run_db(self, func: Callable[..., T], *args: Any) -> T:
        """Run blocking database work in a worker thread, at most `db_threads()` at a time.

        SQLite lets one writer in at a time: with the 40 threads of the default pool, waiting
        writers sleep in SQLite's busy handler (1–100 ms steps) and fight the event loop for the
        GIL. One thread for SQLite: 32 concurrent reporters went from ~430 to ~530 reports/s and
        p99 from ~1 s to ~0.2 s (benchmarks/, wrk -c32, same run). PostgreSQL keeps its pool's size.
        """
        if self.db_limiter is None:
            self.db_limiter = anyio.CapacityLimiter(db_threads(self.engine))
        return await anyio.to_thread.run_sync(functools.partial(func, *args), limiter=self.db_limiter)


def db_threads(engine: Engine) -> int:
    """How many worker threads may use the database at once."""
    if engine.dialect.name == "sqlite":
        return 1
    pool = engine.pool
    size = getattr(pool, "size", lambda: 10)()
    return int(size) + max(int(getattr(pool, "_max_overflow", 0)), 0)


def create_app(
    settings: Settings, clock: Clock = _utcnow, coder: CoderIdentity | None = None
) -> FastAPI:
    engine = make_engine(
        settings.db_url,
        settings.sqlite_synchronous,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout_s=settings.db_pool_timeout_s,
    )
    migrate(engine)
    ctx = Ctx(
        settings=settings,
        engine=engine,
        metrics=Metrics(),
        clock=clock,
        writer=Writer(
            engine,
            notify=bool(settings.webhook_url),
            notice_window_s=settings.webhook_batch_window_s,
        ),
        tokens=TokenCache(),
        coder=coder,
        limits=make_limits(settings),
        replica_id=replicas.new_replica_id(),
        litellm=spend_pull.make_source(settings),
    )
    ctx.writer.on_notices = lambda: ctx.notifier.wake() if ctx.notifier is not None else None
    if ctx.coder is None and settings.coder_url and settings.coder_api_token:
        ctx.coder = CoderIdentity(
            settings.coder_url,
            settings.coder_api_token.get_secret_value(),
            timeout=settings.coder_timeout_s,
            cache_ttl=settings.coder_identity_cache_s,
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.webhook_url:
            ctx.notifier = Notifier(settings, ctx.metrics, engine, ctx.run_db, ctx.replica_id)
            ctx.notifier.start()
        ctx.writer.start()
        await ctx.run_db(replicas.register_tx, ctx.engine, ctx.replica_id)
        loops = [
            asyncio.create_task(_maintenance_loop(ctx), name="drift-maintenance"),
            asyncio.create_task(replicas.heartbeat_loop(ctx), name="drift-heartbeat"),
        ]
        if ctx.litellm is not None:
            loops.append(
                asyncio.create_task(spend_pull.pull_loop(ctx, spend_pages.warm), name="drift-spend")
            )
        try:
            yield
        finally:
            for loop in loops:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            await ctx.writer.stop()  # reports still queued are written before the engine closes
            if ctx.notifier is not None:
                await ctx.notifier.stop()  # sends what is due, leaves the rest in the outbox
            with contextlib.suppress(Exception):  # the database may be gone: nothing to record
                await ctx.run_db(replicas.stopped_tx, ctx)
            engine.dispose()

    app = FastAPI(
        title="workspace-agent drift server",
        version=__version__,
        summary="Collects drift reports from Coder workspaces and shows the fleet's AI setup.",
        lifespan=lifespan,
        # Off by default; DRIFT_API_DOCS=admin serves them to admins only (api_docs.py), never
        # FastAPI's pages, which load JavaScript from a CDN.
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.ctx = ctx

    def count_refused(scope: Any, status: int) -> None:
        if scope.get("path") == wire.REPORTS_PATH and status == 413:
            ctx.metrics.reject("too_large")

    app.add_middleware(
        BodyLimit,
        limit_for=body_limit_for(settings),
        error_body=body_error,
        body_timeout_s=settings.body_timeout_s,
        on_refused=count_refused,
    )
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    busy.install(app)
    disconnect.install(app)
    app.include_router(routes.router)
    app.include_router(corrections.router)
    app.include_router(admin_pages.router)
    app.include_router(spend_pages.router)
    if settings.api_docs == "admin":
        app.include_router(api_docs.router)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process (`--workers N`): settings from `DRIFT_*`."""
    return create_app(Settings())


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    if exc.count_as:
        request.app.state.ctx.metrics.reject(exc.count_as)
    return JSONResponse(
        {"detail": exc.detail, "reason": exc.reason, **exc.extra}, exc.status, headers=exc.headers
    )


_REASONS = {404: "not_found", 405: "method_not_allowed"}


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own refusals (no such route, wrong method) in the same shape as ours."""
    assert isinstance(exc, StarletteHTTPException)
    detail = {404: "no such page or API route", 405: "this route does not take that method"}.get(
        exc.status_code, str(exc.detail)
    )
    reason = _REASONS.get(exc.status_code, "http_error")
    return JSONResponse({"detail": detail, "reason": reason}, exc.status_code, headers=exc.headers)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    detail, errors = describe_validation("the request", exc.errors())
    return JSONResponse({"detail": detail, "reason": "invalid", "errors": errors}, 422)


async def _maintenance_loop(ctx: Ctx) -> None:
    """Every few seconds: notify newly stale workspaces (webhook on) and prune old report ids."""
    while True:
        await asyncio.sleep(ctx.settings.maintenance_interval_s)
        try:
            await maintenance_round(ctx)
        except Exception:  # keep the loop alive; the next round tries again
            log.exception("maintenance round failed")


async def maintenance_round(ctx: Ctx) -> int:
    """One round; returns how many workspaces were newly found stale (notices stored for them)."""
    stale = await ctx.run_db(_maintenance_tx, ctx)
    if stale and ctx.notifier is not None:
        ctx.notifier.wake()
    return len(stale)


def _maintenance_tx(ctx: Ctx) -> list[dict[str, Any]]:
    """The stale scan and its notices in one transaction: a notice exists iff the flag is set."""
    now = ctx.clock()
    with write_tx(ctx.engine) as conn:
        stale = (
            queries.mark_newly_stale(conn, now, ctx.settings.stale_after_s)
            if ctx.settings.webhook_url
            else []
        )
        outbox.add(conn, "stale", stale, ctx.settings.webhook_batch_window_s)
        keep = timedelta(days=ctx.settings.report_retention_days)
        queries.prune_reports(conn, now - keep)
        corrections.prune(conn, now - keep)
        sessions.prune(conn, now)
        outbox.prune_failed(conn, outbox.now_utc() - keep)
    return stale


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the request bodies that handlers read themselves (to check auth and
    size before parsing)."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, summary=app.summary, routes=app.routes
    )
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model, path in (
        (wire.Report, wire.REPORTS_PATH),
        (wire.EnrollRequest, wire.ENROLL_PATH),
        (wire.CorrectionBatch, wire.CORRECTIONS_PATH),
    ):
        body = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components[model.__name__] = body
        schema["paths"][path]["post"]["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}
            },
        }
    app.openapi_schema = schema
    return schema
