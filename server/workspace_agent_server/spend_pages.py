"""The spend page, its JSON API and CSV export (admins only, like the fleet).

Same standards as admin_pages.py: server-rendered, autoescaped, no script (strict CSP), the
session cookie or an admin Bearer token; the one change (pull now) needs the session's CSRF token
and an allowed Origin. Figures come from spend_queries (cached per pull) and say how fresh they
are: when LiteLLM cannot be read the page still shows the last good pull, with why.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy import Connection

from workspace_agent.money import money

from . import spend_csv, spend_pull, spend_queries
from .admin_pages import SECURITY_HEADERS, _env, _gate, csrf_of, render, render_html
from .errors import ApiError, documented
from .routes import check_csrf, ctx_of, json_bytes, require_admin
from .spend_queries import GROUPS, Cache, Period, PeriodError

if TYPE_CHECKING:
    from .app import Ctx

router = APIRouter()
SPEND_PATH = "/api/v1/spend"
PAGE_ROWS = 100  # grouped rows on the page (the CSV has all)
PAGE_KEYS = 50  # budget and inactive keys on the page
MAX_LIMIT = 5000
_env.filters["money"] = money


def _cache(ctx: Ctx) -> Cache:
    if ctx.spend_cache is None:
        ctx.spend_cache = Cache()
    return ctx.spend_cache  # type: ignore[no-any-return]


def _period(ctx: Ctx, preset: str | None, start: str | None, end: str | None) -> Period:
    for name, value in (("preset", preset), ("from", start), ("to", end)):
        if value is not None and (len(value) > 20 or "\x00" in value):
            raise PeriodError(f"{name} is not a period")
    return spend_queries.parse_period(preset, start, end, spend_queries.today_utc(ctx.clock()))


def _invalid(exc: Exception) -> ApiError:
    return ApiError(422, "invalid", f"the request is not valid: {exc}")


def _group(value: str | None) -> str:
    if value is None or value == "":
        return "workspace"
    if value not in GROUPS:
        raise PeriodError(f"group must be one of {', '.join(GROUPS)}")
    return value


async def warm(ctx: Ctx) -> None:
    """After a pull finished (any replica's), add up the default view (30 days by workspace)
    in this process, so that the first admin to open the page does not wait for it."""

    def work() -> None:
        with ctx.engine.connect() as conn:
            state = spend_queries.pull_state(conn)
            gen = int(state.get("generation") or 0)
            if gen == ctx.spend_warm_generation or state.get("lease_by") is not None:
                return
            period = spend_queries.parse_period(
                None, None, None, spend_queries.today_utc(ctx.clock())
            )
            spend_queries.view(
                conn, _cache(ctx), period, "workspace", ctx.settings.tiers, PAGE_ROWS
            )
            ctx.spend_warm_generation = gen

    await ctx.run_db(work)


def _status(ctx: Ctx, conn: Connection) -> dict[str, Any]:
    return spend_queries.status(
        conn, ctx.litellm is not None, ctx.settings.spend_pull_interval_s, ctx.clock()
    )


# --- JSON ------------------------------------------------------------------------------------


@router.get(
    SPEND_PATH,
    tags=["admin"],
    summary="Spend over a period, grouped by workspace, owner, template, tier or model",
    responses=documented(401, 403, 422, 503),
)
async def spend_api(
    request: Request,
    preset: str | None = Query(default=None, max_length=20),
    start: str | None = Query(default=None, alias="from", max_length=20),
    end: str | None = Query(default=None, alias="to", max_length=20),
    group: str | None = Query(default=None, max_length=20),
    limit: int = Query(default=500, ge=1, le=MAX_LIMIT),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> Response:
    """`from`/`to` (UTC days, both included) or a `preset` (today, 7d, 30d, this-month,
    last-month; default 30d). Rows: spend, requests, keys, workspaces, share of the total and
    how many of the row's workspaces are drifted. Also `top` (workspaces), `drifted_spending`
    and `status` (how fresh the figures are)."""
    await require_admin(request)
    ctx = ctx_of(request)
    try:
        period, by = _period(ctx, preset, start, end), _group(group)
    except PeriodError as exc:
        raise _invalid(exc) from None

    def answer() -> bytes:
        with ctx.engine.connect() as conn:
            found = spend_queries.view(
                conn, _cache(ctx), period, by, ctx.settings.tiers, limit, offset
            )
            found["status"] = _status(ctx, conn)
        return json_bytes(found)

    return Response(await ctx.run_db(answer), media_type="application/json")


@router.get(
    SPEND_PATH + "/budgets",
    tags=["admin"],
    summary="Budget use per key: percent of max_budget (most first) and reset time",
    responses=documented(401, 403, 422, 503),
)
async def budgets_api(
    request: Request,
    limit: int = Query(default=500, ge=1, le=MAX_LIMIT),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> Response:
    await require_admin(request)
    ctx = ctx_of(request)

    def answer() -> bytes:
        with ctx.engine.connect() as conn:
            return json_bytes(spend_queries.budgets(conn, ctx.clock(), limit, offset))

    return Response(await ctx.run_db(answer), media_type="application/json")


@router.get(
    SPEND_PATH + "/inactive",
    tags=["admin"],
    summary="Keys with no spend for N days",
    responses=documented(401, 403, 422, 503),
)
async def inactive_api(
    request: Request,
    days: int | None = Query(default=None, ge=1, le=400),
    limit: int = Query(default=500, ge=1, le=MAX_LIMIT),
    offset: int = Query(default=0, ge=0, le=10_000_000),
) -> Response:
    await require_admin(request)
    ctx = ctx_of(request)
    idle = days or ctx.settings.spend_inactive_days

    def answer() -> bytes:
        with ctx.engine.connect() as conn:
            return json_bytes(spend_queries.inactive(conn, ctx.clock(), idle, limit, offset))

    return Response(await ctx.run_db(answer), media_type="application/json")


@router.get(
    SPEND_PATH + "/export.csv",
    tags=["admin"],
    summary="CSV of a spend view: groups, budgets or inactive",
    responses=documented(401, 403, 422, 503),
)
async def export_csv(
    request: Request,
    view: str = Query(default="groups", max_length=20),
    preset: str | None = Query(default=None, max_length=20),
    start: str | None = Query(default=None, alias="from", max_length=20),
    end: str | None = Query(default=None, alias="to", max_length=20),
    group: str | None = Query(default=None, max_length=20),
    days: int | None = Query(default=None, ge=1, le=400),
) -> Response:
    """The same rows as the page and the JSON API, all of them; text cells that a spreadsheet
    would run as a formula start with `'`."""
    await require_admin(request)
    ctx = ctx_of(request)
    if view not in ("groups", "budgets", "inactive"):
        raise _invalid(ValueError("view must be groups, budgets or inactive"))
    try:
        period, by = _period(ctx, preset, start, end), _group(group)
    except PeriodError as exc:
        raise _invalid(exc) from None
    idle = days or ctx.settings.spend_inactive_days

    def answer() -> bytes:
        with ctx.engine.connect() as conn:
            if view == "budgets":
                keys = spend_queries.budgets(conn, ctx.clock(), 10**7)["keys"]
                return spend_csv.of_dicts(spend_csv.KEY_COLUMNS, keys)
            if view == "inactive":
                keys = spend_queries.inactive(conn, ctx.clock(), idle, 10**7)["keys"]
                return spend_csv.of_dicts(spend_csv.KEY_COLUMNS, keys)
            rows = spend_queries.group_rows(conn, _cache(ctx), period, by, ctx.settings.tiers)
            return spend_csv.of_dicts(spend_csv.GROUP_COLUMNS, rows)

    body = await ctx.run_db(answer)
    name = (
        f"spend-{view}-{period.start}-{period.end}.csv" if view == "groups" else f"spend-{view}.csv"
    )
    return Response(
        body,
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
        },
    )


def start_pull(ctx: Ctx) -> bool:
    """Start a pull now in the background (False: this process is already pulling)."""
    if ctx.spend_task is not None and not ctx.spend_task.done():
        return False
    ctx.spend_task = asyncio.create_task(
        spend_pull.pull_once(ctx, force=True), name="drift-spend-now"
    )
    return True


@router.post(
    SPEND_PATH + "/pull",
    tags=["admin"],
    summary="Pull spend from LiteLLM now (in the background)",
    status_code=202,
    responses=documented(401, 403, 503),
)
async def pull_api(request: Request) -> dict[str, Any]:
    """202 `{started}`; the pull waits for no period but never runs beside another replica's.
    `GET /api/v1/spend` shows its outcome in `status`."""
    await require_admin(request, changes_state=True)
    ctx = ctx_of(request)
    if ctx.litellm is None:
        raise ApiError(
            503,
            "spend_off",
            "spend is not pulled: set DRIFT_LITELLM_URL and DRIFT_LITELLM_MASTER_KEY",
        )
    return {"started": start_pull(ctx)}


# --- the page --------------------------------------------------------------------------------


@router.get("/spend", response_class=HTMLResponse, include_in_schema=False)
async def spend_page(request: Request) -> Response:
    if (refused := await _gate(request)) is not None:
        return refused
    ctx = ctx_of(request)
    p = request.query_params
    csrf = csrf_of(request)
    error = None
    try:
        period = _period(ctx, p.get("preset") or None, p.get("from") or None, p.get("to") or None)
        by = _group(p.get("group"))
    except PeriodError as exc:
        error = str(exc)
        period = _period(ctx, None, None, None)
        by = "workspace"
    raw_days = p.get("days", "")
    idle = (
        int(raw_days)
        if raw_days.isascii() and raw_days.isdigit() and 1 <= int(raw_days) <= 400
        else ctx.settings.spend_inactive_days
    )
    chosen = {
        "preset": period.preset or "",
        "from": "" if period.preset else period.start.isoformat(),
        "to": "" if period.preset else period.end.isoformat(),
        "group": by,
        "days": str(idle),
    }

    def link(path: str = "/spend", **changes: object) -> str:
        values = {**chosen, **changes}
        if changes.get("preset"):
            values |= {"from": "", "to": ""}
        return path + "?" + urlencode({k: v for k, v in values.items() if v not in ("", None)})

    def page() -> str:
        with ctx.engine.connect() as conn:
            data = spend_queries.view(conn, _cache(ctx), period, by, ctx.settings.tiers, PAGE_ROWS)
            status = _status(ctx, conn)
            budget = spend_queries.budgets(conn, ctx.clock(), PAGE_KEYS)
            idle_keys = spend_queries.inactive(conn, ctx.clock(), idle, PAGE_KEYS)
        return render_html(
            ctx,
            "spend.html",
            data=data,
            status=status,
            budget=budget,
            idle=idle_keys,
            period=period,
            group=by,
            groups=GROUPS,
            presets=spend_queries.PRESETS,
            chosen=chosen,
            link=link,
            error=error,
            warn_at=min(ctx.settings.spend_budget_thresholds or [80]),
            refresh=300,
            signed_in=True,
            csrf=csrf,
        )

    html = await ctx.run_db(page)
    return HTMLResponse(html, 422 if error else 200, headers=SECURITY_HEADERS)


@router.post("/spend/pull", include_in_schema=False)
async def pull_form(request: Request) -> Response:
    """The page's "Pull now" button: a form with the session's CSRF token."""
    if (refused := await _gate(request)) is not None:
        return refused
    ctx = ctx_of(request)
    session = getattr(request.state, "session", None)
    if session is not None:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        try:
            check_csrf(request, session, (form.get("csrf") or [""])[0])
        except ApiError as exc:
            return render(ctx, "error.html", 403, title="Not allowed", detail=exc.detail)
    if ctx.litellm is not None:
        with contextlib.suppress(RuntimeError):
            start_pull(ctx)
    return RedirectResponse("/spend", 303)
