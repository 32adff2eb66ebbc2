"""Server-rendered admin pages (Jinja, autoescaped, no JavaScript): the fleet and one workspace,
plus a small login form that opens a server-side session (sessions.py): its cookie is a random
id, every form that changes something carries the session's CSRF token, and sign-out deletes
the session."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, pass_context
from jinja2.runtime import Context
from starlette.concurrency import run_in_threadpool

from . import auth, queries, sessions
from .db import write_tx
from .errors import ApiError
from .limits import source, too_many
from .routes import MAX_OFFSET, check_csrf, ctx_of, detail_data, fleet_data, require_admin

if TYPE_CHECKING:
    from .app import Ctx

router = APIRouter(include_in_schema=False)
LEVELS = ("standard", "design-first", "unrestricted")
PAGE_SIZE = 200
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_env = Environment(loader=PackageLoader("workspace_agent_server", "templates"), autoescape=True)


def _ts(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "—"


def _ago(value: datetime | None, now: datetime) -> str:
    if value is None:
        return "never"
    seconds = int((now - value).total_seconds())
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    return f"{seconds // 60} min" if seconds % 60 == 0 else f"{seconds} s"


@pass_context
def _ago_filter(context: Context, value: datetime | None) -> str:
    return _ago(value, context["_now"])


# Filters are set once, so each template is compiled once (a per-request overlay environment
# compiled the fleet template on every view: ~13 ms of its ~20).
_env.filters["ts"] = _ts
_env.filters["ago"] = _ago_filter


def csrf_of(request: Request) -> str:
    """The signed-in session's CSRF token for the page's forms ("" for a Bearer-token view)."""
    session = getattr(request.state, "session", None)
    return session.csrf if session is not None else ""


def render_html(ctx: Ctx, template: str, **values: Any) -> str:
    """The page as text. Pure Python work: call it off the event loop for big pages."""
    return _env.get_template(template).render(_now=ctx.clock(), **values)


def render(ctx: Ctx, template: str, code: int = 200, **values: Any) -> HTMLResponse:
    return HTMLResponse(render_html(ctx, template, **values), code, headers=SECURITY_HEADERS)


async def _gate(request: Request) -> Response | None:
    """None when an admin is signed in; otherwise the page to show instead."""
    try:
        await require_admin(request)
        return None
    except ApiError as exc:
        if exc.status == 401 and auth.bearer(request.headers.get("authorization")) is None:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse("/login?" + urlencode({"next": target}), 303)
        return render(
            ctx_of(request),
            "error.html",
            exc.status,
            title="Not allowed" if exc.status == 403 else "Unavailable",
            detail=exc.detail,
        )


def _flag(value: str | None) -> bool | None:
    return True if value in ("true", "1", "on") else False if value in ("false", "0") else None


@router.get("/", response_class=HTMLResponse)
async def fleet_page(request: Request) -> Response:
    if (refused := await _gate(request)) is not None:
        return refused
    ctx = ctx_of(request)
    p = request.query_params

    def text(name: str, limit: int) -> str | None:
        # NUL cannot reach PostgreSQL; no stored value holds one anyway (the API refuses it).
        return (p.get(name) or "").replace("\x00", "").strip()[:limit] or None

    status = p.get("status") or None
    offset = p.get("offset", "")
    flt = queries.FleetFilter(
        status=status if status in queries.STATUSES else None,
        level=text("level", 50),
        owner=text("owner", 200),
        mismatch=_flag(p.get("mismatch")) or None,
        q=text("q", 200),
        drifted=_flag(p.get("drifted")),
        stale=_flag(p.get("stale")),
        limit=PAGE_SIZE,
        offset=min(int(offset), MAX_OFFSET) if offset.isascii() and offset.isdigit() else 0,
    )
    base = {
        k: v
        for k, v in {
            "q": flt.q,
            "level": flt.level,
            "owner": flt.owner,
            "mismatch": "true" if flt.mismatch else None,
        }.items()
        if v
    }

    csrf = csrf_of(request)

    def link(**changes: object) -> str:
        return "/?" + urlencode({k: v for k, v in {**base, **changes}.items() if v != ""})

    def page() -> str:  # query and render off the event loop: reports keep flowing meanwhile
        data = fleet_data(ctx, flt)
        levels = sorted(
            set(LEVELS)
            | {w["enforcement_level"] for w in data["workspaces"] if w["enforcement_level"]}
        )
        return render_html(
            ctx,
            "fleet.html",
            data=data,
            flt=flt,
            link=link,
            levels=levels,
            refresh=60,
            signed_in=True,
            stale_text=_duration(ctx.settings.stale_after_s),
            heartbeats=ctx.settings.stale_after_heartbeats,
            enrollment=_enrollment(ctx),
            csrf=csrf,
        )

    return HTMLResponse(await run_in_threadpool(page), headers=SECURITY_HEADERS)


def _enrollment(ctx: Ctx) -> dict[str, bool]:
    """Which ways to enroll are on: the page warns while the weaker shared secret is one of them."""
    settings = ctx.settings
    secret = settings.enrollment_secret is not None and not settings.require_agent_token
    return {"coder": ctx.coder is not None, "secret": secret}


@router.get("/workspaces/{workspace_id:path}", response_class=HTMLResponse)
async def workspace_page(request: Request, workspace_id: str) -> Response:
    if (refused := await _gate(request)) is not None:
        return refused
    ctx = ctx_of(request)
    csrf = csrf_of(request)

    def page() -> str | None:
        if "\x00" in workspace_id:  # no stored id holds one
            return None
        found = detail_data(ctx, workspace_id)
        if found is None:
            return None
        return render_html(
            ctx,
            "workspace.html",
            w=found,
            refresh=60,
            signed_in=True,
            enrollment=_enrollment(ctx),
            csrf=csrf,
        )

    html = await run_in_threadpool(page)
    if html is None:
        return render(
            ctx,
            "error.html",
            404,
            title="No such workspace",
            detail=f"No workspace with id {workspace_id!r} has enrolled.",
            signed_in=True,
            csrf=csrf,
        )
    return HTMLResponse(html, headers=SECURITY_HEADERS)


def _safe_next(target: str | None) -> str:
    """Only same-site paths (no `//host` or scheme) may be redirected to after sign-in."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target


@router.get("/login", response_class=HTMLResponse)
async def login_form(request: Request) -> Response:
    return render(ctx_of(request), "login.html", next=_safe_next(request.query_params.get("next")))


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    ctx = ctx_of(request)
    limits = ctx.limits
    assert limits is not None
    address = source(request)
    if not sessions.origin_allowed(
        request.headers.get("origin"), request.headers.get("host"), ctx.settings.admin_origins
    ):
        return render(
            ctx,
            "error.html",
            403,
            title="Not allowed",
            detail="Sign-in is only accepted from this server's own page.",
        )
    body = await request.body()  # at most LOGIN_MAX_BYTES: BodyLimit refused anything larger
    form = parse_qs(body.decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next((form.get("next") or ["/"])[0])
    # Failed sign-ins are counted per source address; once they are spent, no token is even
    # compared from there until the window passes (else a guesser would still learn the right one).
    if (wait := limits.login_failures.spent(address)) is not None:
        exc = too_many(wait, "failed sign-ins from this address")
        return render(ctx, "login.html", 429, next=target, error=exc.detail.capitalize() + ".")
    match = (
        next((t for t in ctx.settings.admin_tokens if auth.matches(token, t)), None)
        if token
        else None
    )
    if match is None:
        limits.login_failures.check(address)
        problem = (
            "this server has no admin tokens (set DRIFT_ADMIN_TOKENS)"
            if not ctx.settings.admin_tokens
            else "that is not an admin token of this server"
        )
        return render(ctx, "login.html", 401, next=target, error=problem.capitalize() + ".")

    def open_session() -> str:
        with write_tx(ctx.engine) as conn:
            cookie, _ = sessions.create(conn, match, ctx.clock(), ctx.settings.session_hours)
        return cookie

    cookie = await ctx.run_db(open_session)
    response = RedirectResponse(target, 303)
    response.set_cookie(
        auth.SESSION_COOKIE,
        cookie,
        max_age=int(ctx.settings.session_hours * 3600),
        httponly=True,
        samesite="strict",
        secure=ctx.settings.cookie_secure,
        path="/",
    )
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    """Ends the session in the database (the cookie is dead everywhere at once). Needs the
    session's CSRF token and an allowed Origin: another site cannot sign an admin out."""
    ctx = ctx_of(request)
    cookie = request.cookies.get(auth.SESSION_COOKIE)
    session = await ctx.run_db(_session, ctx, cookie) if cookie else None
    if session is not None:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        sent = (form.get(sessions.CSRF_FIELD) or [""])[0] or request.headers.get(
            sessions.CSRF_HEADER
        )
        try:
            check_csrf(request, session, sent)
        except ApiError as exc:
            return render(ctx, "error.html", 403, title="Not allowed", detail=exc.detail)

        def end() -> None:
            with write_tx(ctx.engine) as conn:
                sessions.end(conn, session)

        await ctx.run_db(end)
    response = RedirectResponse("/login", 303)
    response.delete_cookie(auth.SESSION_COOKIE, path="/")
    return response


def _session(ctx: Ctx, cookie: str | None) -> sessions.Session | None:
    with ctx.engine.connect() as conn:
        return sessions.lookup(conn, cookie, ctx.settings.admin_tokens, ctx.clock())
