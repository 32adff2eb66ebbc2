"""The provisioner's HTTP API: the platform's routes, bodies and status codes, plus identity.

    POST /api/v1/keys/workspace   Authorization: Bearer <PROVISIONER_SECRET>
                                  Coder-Agent-Token: <CODER_AGENT_TOKEN>   (new, see below)
        {workspace_id, username, workspace_name, enforcement_level, guardrail_action}
        201 {"key", "reused": false, "identity"} · 200 {"key", "reused": true, "identity"}
        400 {"error": "workspace_id and username are required"} · 401 {"error": "unauthorized"}
        502 {"error": "Failed to generate key: …"}
      and, new: 403 (identity refused, or missing when required) · 429 (rate limit, with
      Retry-After) · 503 (Coder could not be asked: nothing is handed out) · 413 (a body over
      16 KB, refused before it is read).
    GET  /api/v1/keys/info        Authorization: Bearer <virtual key> → LiteLLM's /key/info for it
    GET  /health → {"status": "ok"} · GET /health/ready → 200/503 {"status", "litellm", "coder"}

Key answers also carry `generation` (the key's generation number), `level` (the level the key
enforces), `rotated` (this answer's key replaced the previous one), `rotated_at` (when the
current generation was made by a rotation, else null) and, when the request asked for another
level, `level_change`: `raised` (rotated to the stricter level), `lowered` (rotated down with an
admin's approval) or `refused` (a less strict level without approval: the key keeps its level).
A workspace whose key was revoked (Coder deleted it, or an admin) gets 403. The lifecycle routes
(delete hook, admin API) are in admin.py; the reconcile loop in reconcile.py.

`identity` in a key answer says how the caller was known: `coder-agent-token` (Coder confirmed
the workspace) or `provisioner-secret` (legacy mode: only the shared secret). Clients of the
platform's contract ignore the extra field.

The rate limit counts a request only once it is known who asks, and under that identity: a
verified workspace's budget is its own (requests refused for a wrong or missing agent token
never spend it), and unverified legacy requests for a workspace id have a budget of their own.
Identity checks sent to Coder are limited per source address (issue 15).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from coder_identity import (
    AGENT_TOKEN_HEADER,
    CoderIdentity,
    CoderUnavailable,
    IdentityRefused,
    TooManyLookups,
)
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from http_guard.body_limit import BodyLimit

from key_provisioner import __version__
from key_provisioner.admin import add_lifecycle_routes
from key_provisioner.bodies import MAX_BODY_BYTES, json_object, text_field
from key_provisioner.coder_status import CoderWorkspaces
from key_provisioner.generations import current
from key_provisioner.keys import (
    LEVELS,
    Decision,
    Stored,
    decide,
    derive_key,
    generate_body,
    is_downgrade,
    normalize_level,
)
from key_provisioner.litellm import LiteLLM, LiteLLMError
from key_provisioner.logs import logger
from key_provisioner.ratelimit import RateLimiter
from key_provisioner.reconcile import Reconciler, ReconcileSettings
from key_provisioner.revoke import Revoker
from key_provisioner.rotation import KeySpec, level_change, rotate
from key_provisioner.settings import Settings
from key_provisioner.store import Store

if TYPE_CHECKING:  # pragma: no cover
    import httpx

KEY_PATH = "/api/v1/keys/workspace"
INFO_PATH = "/api/v1/keys/info"
VERIFIED = "coder-agent-token"
LEGACY = "provisioner-secret"


@dataclass
class _Caller:
    """Who asked, once known: Coder's facts when verified, the body's otherwise."""

    identity: str
    workspace_id: str
    owner: str
    workspace_name: str
    template_name: str = ""


def create_app(
    settings: Settings,
    *,
    coder: CoderIdentity | None = None,
    litellm_transport: httpx.AsyncBaseTransport | None = None,
    coder_transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> FastAPI:
    """The ASGI app for `settings`; tests pass their own Coder checker and transports."""
    log = logger(settings.secrets)
    if coder is None and settings.coder_url and settings.coder_api_token:
        coder = CoderIdentity(
            settings.coder_url,
            settings.coder_api_token,
            timeout=settings.coder_timeout_s,
            cache_ttl=settings.identity_cache_s,
        )
    litellm = LiteLLM(
        settings.litellm_url,
        settings.litellm_master_key,
        timeout=settings.litellm_timeout_s,
        transport=litellm_transport,
    )
    limiter = RateLimiter(settings.rate_limit, settings.rate_window_s, clock)
    lookups = RateLimiter(settings.coder_lookup_limit, settings.rate_window_s, clock)
    bad_keys = RateLimiter(settings.coder_lookup_limit, settings.rate_window_s, clock)
    locks = _Locks()
    store_box: list[Store] = []
    revoker = Revoker(lambda: store_box[0], litellm, settings.derivation_secret, log)
    coder_ws = (
        CoderWorkspaces(
            settings.coder_url,
            settings.coder_api_token,
            timeout=settings.coder_timeout_s,
            transport=coder_transport,
        )
        if settings.coder_url and settings.coder_api_token
        else None
    )
    reconciler = (
        Reconciler(
            coder_ws,
            lambda: store_box[0],
            revoker,
            locks.hold,
            ReconcileSettings(
                interval_s=settings.reconcile_interval_s,
                confirm_s=settings.reconcile_confirm_s,
                max_fraction=settings.reconcile_max_fraction,
                max_always=settings.reconcile_max_always,
                batch=settings.reconcile_batch,
                concurrency=settings.reconcile_concurrency,
                window_max=settings.reconcile_limit,
                window_s=settings.reconcile_limit_window_s,
            ),
            log,
        )
        if coder_ws is not None
        else None
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        store_box.append(Store(settings.db_path))
        mode = (
            "required"
            if settings.identity == "required"
            else "legacy (requests without an agent token are served)"
        )
        log.info(
            "key provisioner %s: identity %s; Coder %s; LiteLLM %s",
            __version__,
            mode,
            settings.coder_url or "not configured",
            settings.litellm_url,
        )
        loop_task = None
        if reconciler is not None and settings.reconcile_interval_s > 0:
            loop_task = asyncio.create_task(reconciler.run_forever())
            log.info(
                "reconcile loop: every %g s, Coder at %s",
                settings.reconcile_interval_s,
                settings.coder_url,
            )
        else:
            log.warning(
                "no reconcile loop (%s): keys of deleted workspaces are not revoked automatically",
                "CODER_URL not set"
                if reconciler is None
                else "KEY_PROVISIONER_RECONCILE_INTERVAL_S=0",
            )
            # Queued revocations (rotated-out keys) are still retried: an old key must not stay
            # valid because no reconcile pass drains the queue.
            loop_task = asyncio.create_task(revoker.retry_forever(settings.reconcile_interval_s))
        try:
            yield
        finally:
            if loop_task is not None:
                loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop_task
            store_box.pop().close()

    app = FastAPI(
        title="workspace-key-provisioner",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    app.add_middleware(
        BodyLimit,
        limit_for=lambda _method, _path: MAX_BODY_BYTES,
        error_body=lambda _status, sentence, _limit: {"error": sentence},
        body_timeout_s=settings.body_timeout_s,
    )

    def store() -> Store:
        return store_box[0]

    def too_many(caller: _Caller, wait: float, what: str) -> JSONResponse:
        store().event("rate-limited", caller.workspace_id, caller.identity)
        log.warning("rate limited: workspace=%s identity=%s", caller.workspace_id, caller.identity)
        seconds = max(math.ceil(wait), 1)
        return error(429, f"{what}: try again in {seconds} s", {"Retry-After": str(seconds)})

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready() -> JSONResponse:
        litellm_ok = await litellm.alive()
        coder_ok = None if coder is None else (await coder.build_info()) is not None
        ok = litellm_ok and coder_ok is not False
        last = reconciler.last if reconciler is not None else None
        reconcile = (
            None
            if last is None
            else {
                "outcome": last.outcome,
                "at": last.started_at,
                "revoked": last.revoked,
            }
        )
        return JSONResponse(
            {
                "status": "ok" if ok else "degraded",
                "litellm": litellm_ok,
                "coder": coder_ok,
                "reconcile": reconcile,
            },
            status_code=200 if ok else 503,
        )

    @app.get(INFO_PATH)
    async def key_info(request: Request) -> JSONResponse:
        key = _bearer(request.headers.get("authorization"))
        if key is None:
            return error(401, "unauthorized")
        # Each call asks LiteLLM: keys it refuses are counted per source address, and once they
        # are spent nothing more is asked from there for a while (a good key is never counted).
        address = request.client.host if request.client else "unknown"
        if (wait := bad_keys.spent(address)) is not None:
            seconds = max(math.ceil(wait), 1)
            return error(
                429,
                f"too many unknown keys from this address: try again in {seconds} s",
                {"Retry-After": str(seconds)},
            )
        try:
            answer = await litellm.own_info(key)
        except LiteLLMError as exc:
            log.warning("key info: %s", exc.message)
            return error(502, "failed to contact LiteLLM")
        if answer.status in (400, 401, 403, 404):
            bad_keys.check(address)
        return JSONResponse(answer.body, status_code=answer.status)

    @app.post(KEY_PATH)
    async def workspace_key(request: Request) -> JSONResponse:
        secret = _bearer(request.headers.get("authorization"))
        if secret is None or not _same(secret, settings.provisioner_secret):
            return error(401, "unauthorized")
        body = await json_object(request)
        workspace_id = text_field(body, "workspace_id")
        username = text_field(body, "username")
        if not workspace_id or not username:
            return error(400, "workspace_id and username are required")
        workspace_name = text_field(body, "workspace_name")
        address = request.client.host if request.client else "unknown"

        agent_token = (request.headers.get(AGENT_TOKEN_HEADER) or "").strip()
        if agent_token and coder is not None:
            try:
                verified = await coder.verify(
                    agent_token, workspace_id, lambda: lookups.check(address)
                )
            except TooManyLookups as exc:
                seconds = max(math.ceil(exc.retry_after), 1)
                log.warning("too many identity checks from %s", address)
                return error(
                    429,
                    f"too many identity checks from this address: try again in {seconds} s",
                    {"Retry-After": str(seconds)},
                )
            except IdentityRefused as exc:
                store().event(
                    "identity-refused",
                    workspace_id,
                    "refused",
                    reason=exc.reason,
                    username=username,
                )
                log.warning(
                    "identity refused: workspace=%s username=%s reason=%s",
                    workspace_id,
                    username,
                    exc.reason,
                )
                return error(403, exc.message)
            except CoderUnavailable as exc:
                store().event("identity-unavailable", workspace_id, "unknown", problem=exc.message)
                log.error("cannot verify workspace=%s: %s", workspace_id, exc.message)
                return error(
                    503,
                    f"cannot verify this workspace's identity, so no key is handed out: {exc.message}",
                )
            if verified.owner.lower() != username.lower():
                store().event(
                    "identity-refused", workspace_id, "refused", reason="owner", username=username
                )
                log.warning(
                    "identity refused: workspace=%s owner=%s but username=%s",
                    workspace_id,
                    verified.owner,
                    username,
                )
                return error(
                    403, f"username {username!r} is not the owner of workspace {workspace_id}"
                )
            caller = _Caller(
                VERIFIED,
                verified.workspace_id,
                verified.owner,
                verified.workspace_name,
                verified.template_name,
            )
        elif settings.identity == "required":
            store().event("identity-missing", workspace_id, "refused", username=username)
            log.warning(
                "no agent token: workspace=%s username=%s (refused: identity required)",
                workspace_id,
                username,
            )
            return error(
                403,
                f"this key provisioner hands out keys only to a verified workspace: send the "
                f"workspace's CODER_AGENT_TOKEN in the {AGENT_TOKEN_HEADER} header "
                "(workspace-agent does when CODER_AGENT_TOKEN is set)",
            )
        else:
            store().event(
                "legacy-request",
                workspace_id,
                LEGACY,
                username=username,
                agent_token_ignored=bool(agent_token),
            )
            log.warning(
                "legacy request without a verified identity: workspace=%s username=%s",
                workspace_id,
                username,
            )
            caller = _Caller(LEGACY, workspace_id, username, workspace_name)

        # Counted now that the caller is known, under its identity (see the module's docstring).
        wait = limiter.check(f"{caller.identity}:{caller.workspace_id.lower()}")
        if wait is not None:
            return too_many(
                caller, wait, f"too many key requests for workspace {caller.workspace_id}"
            )

        requested, unknown = normalize_level(body.get("enforcement_level"))
        if unknown:
            log.info(
                "unknown enforcement level %r for workspace=%s: standard",
                str(body.get("enforcement_level"))[:40],
                workspace_id,
            )
        guardrail = text_field(body, "guardrail_action") or "block"
        try:
            async with locks.hold(
                caller.workspace_id.lower()
            ):  # one key decision per workspace at a time
                return await _obtain(caller, requested, guardrail)
        except LiteLLMError as exc:
            store().event(
                "litellm-failed", caller.workspace_id, caller.identity, problem=exc.message
            )
            log.error("key for workspace=%s failed: %s", caller.workspace_id, exc.message)
            return error(502, f"Failed to generate key: {exc.message}")

    async def _obtain(caller: _Caller, requested: str, guardrail: str) -> JSONResponse:
        db = store()
        stored = db.stored(caller.workspace_id)
        if stored is not None and stored.revoked_at:
            db.event("revoked-refused", caller.workspace_id, caller.identity)
            return error(
                403,
                f"the key of workspace {caller.workspace_id} was revoked at {stored.revoked_at} "
                "(the workspace was deleted in Coder, or an admin revoked it): no key is handed out",
            )
        generation, facts, steps = await current(
            litellm,
            settings.derivation_secret,
            caller.workspace_id,
            stored.generation if stored else 0,
        )
        if steps:
            level = (facts.level if facts else None) or (stored.level if stored else "standard")
            stored = Stored(generation, level if level in LEVELS else "standard")
            log.warning(
                "workspace=%s: the store was at an older generation; LiteLLM has generation %d",
                caller.workspace_id,
                generation,
            )
        decision = decide(stored, facts, requested, now())
        if decision.action == "reuse" and decision.mismatch:
            change = level_change(
                decision.level, requested, db.approval(caller.workspace_id), now()
            )
            if change in ("raise", "lower-approved"):
                return await _rotate(
                    caller, decision.generation, decision.level, requested, guardrail, change
                )
        if decision.mismatch:
            _record_mismatch(caller, decision, requested)
        if decision.action == "refuse":
            db.event("key-blocked", caller.workspace_id, caller.identity)
            return error(
                403,
                f"the key of workspace {caller.workspace_id} is blocked in LiteLLM: ask an admin",
            )
        key = derive_key(settings.derivation_secret, caller.workspace_id, decision.generation)
        if decision.action == "reuse":
            db.save(caller.workspace_id, decision.generation, decision.level, caller.owner)
            db.event(
                "key-reused", caller.workspace_id, caller.identity, generation=decision.generation
            )
            log.info(
                "key reused: workspace=%s owner=%s level=%s identity=%s",
                caller.workspace_id,
                caller.owner,
                decision.level,
                caller.identity,
            )
            return _answer(
                caller,
                key,
                200,
                decision.generation,
                decision.level,
                rotated_at=stored.rotated_at if stored else None,
                change="refused"
                if decision.mismatch and is_downgrade(decision.level, requested)
                else None,
            )
        await _generate(caller, decision, key, guardrail)
        db.save(caller.workspace_id, decision.generation, decision.level, caller.owner)
        kind = "key-issued" if decision.reason == "new" else "key-rotated"
        db.event(
            kind,
            caller.workspace_id,
            caller.identity,
            generation=decision.generation,
            reason=decision.reason,
            level=decision.level,
        )
        log.info(
            "%s: workspace=%s owner=%s level=%s generation=%d reason=%s identity=%s",
            kind,
            caller.workspace_id,
            caller.owner,
            decision.level,
            decision.generation,
            decision.reason,
            caller.identity,
        )
        return _answer(caller, key, 201, decision.generation, decision.level, rotated_at=None)

    def _answer(
        caller: _Caller,
        key: str,
        status: int,
        generation: int,
        level: str,
        *,
        rotated: bool = False,
        rotated_at: str | None,
        change: str | None = None,
    ) -> JSONResponse:
        body: dict[str, Any] = {
            "key": key,
            "reused": status == 200,
            "identity": caller.identity,
            "generation": generation,
            "level": level,
            "rotated": rotated,
            "rotated_at": rotated_at,
        }
        if change:
            body["level_change"] = change
        return JSONResponse(body, status_code=status)

    async def _rotate(
        caller: _Caller, generation: int, kept: str, requested: str, guardrail: str, change: str
    ) -> JSONResponse:
        spec = KeySpec(
            caller.workspace_id,
            caller.owner,
            caller.workspace_name,
            caller.template_name,
            caller.identity,
            guardrail,
        )
        done = await rotate(
            spec,
            old_generation=generation,
            old_level=kept,
            new_level=requested,
            reason="level-raised" if change == "raise" else "level-lowered",
            settings=settings,
            litellm=litellm,
            store=store(),
            revoker=revoker,
        )
        approval = store().approval(caller.workspace_id) if change == "lower-approved" else None
        if approval is not None:
            store().approval_used(caller.workspace_id)
        store().event(
            "key-rotated",
            caller.workspace_id,
            caller.identity,
            generation=done.generation,
            reason="level-changed",
            level=done.level,
            previous_level=kept,
            approved_by=approval.approved_by if approval else None,
        )
        log.warning(
            "key rotated for a level change: workspace=%s %s -> %s generation=%d%s",
            caller.workspace_id,
            kept,
            requested,
            done.generation,
            f" (approved by {approval.approved_by})" if approval else "",
        )
        key = derive_key(settings.derivation_secret, caller.workspace_id, done.generation)
        return _answer(
            caller,
            key,
            201,
            done.generation,
            done.level,
            rotated=True,
            rotated_at=done.rotated_at,
            change="raised" if change == "raise" else "lowered",
        )

    async def _generate(caller: _Caller, decision: Decision, key: str, guardrail: str) -> None:
        body = generate_body(
            key=key,
            workspace_id=caller.workspace_id,
            owner=caller.owner,
            workspace_name=caller.workspace_name,
            level=decision.level,
            guardrail_action=guardrail,
            identity=caller.identity,
            generation=decision.generation,
            template_name=caller.template_name,
            **settings.key_limits,
        )
        if decision.reason == "expired":  # the dead key still holds the alias
            await litellm.delete(
                derive_key(settings.derivation_secret, caller.workspace_id, decision.generation - 1)
            )
        try:
            await litellm.generate(body)
        except LiteLLMError:
            # Another provisioner (or a lost race) may have made this very key meanwhile.
            if await litellm.find(key) is None:
                raise

    def _record_mismatch(caller: _Caller, decision: Decision, requested: str) -> None:
        downgrade = is_downgrade(decision.level, requested)
        store().event(
            "level-mismatch",
            caller.workspace_id,
            caller.identity,
            kept=decision.level,
            requested=requested,
            downgrade=downgrade,
        )
        log.warning(
            "enforcement level %s requested for workspace=%s but its key keeps %s (%s); anti-downgrade",
            requested,
            caller.workspace_id,
            decision.level,
            "a downgrade attempt" if downgrade else "a change",
        )

    add_lifecycle_routes(
        app,
        settings=settings,
        store=store,
        revoker=revoker,
        reconciler=reconciler,
        coder=coder_ws,
        hold=locks.hold,
        log=log,
        clock=clock,
    )
    app.state.settings = settings
    app.state.store = store
    app.state.reconciler = reconciler
    return app


class _Locks:
    """One asyncio.Lock per workspace, forgotten when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._entries: dict[str, list[Any]] = {}  # name → [lock, holders and waiters]

    @asynccontextmanager
    async def hold(self, name: str) -> AsyncIterator[None]:
        entry = self._entries.setdefault(name, [asyncio.Lock(), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if entry[1] == 0:
                del self._entries[name]


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def _same(candidate: str, expected: str) -> bool:
    import hmac

    return hmac.compare_digest(candidate.encode(), expected.encode())
