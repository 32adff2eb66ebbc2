"""Key-lifecycle routes: the template's delete hook and the admins' API (issue 18).

    POST /api/v1/keys/workspace/{id}/revoke        Bearer KEY_PROVISIONER_REVOKE_SECRET (or admin)
        The Coder template's destroy-time hook. Revokes only when Coder itself says the workspace
        is gone (410) or being deleted (its latest build is a delete): a leaked hook secret can
        end no live workspace's key. 200 {"revoked", "workspace_id", "coder"} · 409 Coder says it
        is alive · 503 Coder could not be asked (the reconcile loop revokes it later).
    POST /api/v1/admin/workspaces/{id}/revoke      admin {"by", "reason"} → revoked whatever Coder says
    POST /api/v1/admin/workspaces/{id}/level       admin {"level", "by", "reason"} → the next key
        request of that workspace for that (less strict) level rotates its key to it, once
    GET  /api/v1/admin/reconcile                   admin → the loop's last pass
    POST /api/v1/admin/reconcile                   admin → run a pass now, its result

Every admin action is an event (`workspace-revoked`, `level-approved`) naming the admin by the
`by` field and by a fingerprint of the token used (never the token), and a WARNING log line.

Rate limits (the sliding window of key requests, http_guard.rate_limit), counted so that a
refused request never spends a legitimate caller's budget:

* a caller whose credential is good has `KEY_PROVISIONER_LIFECYCLE_RATE_LIMIT` requests per
  window, its own: per admin token, and per source address for the hook secret (shared by every
  Coder provisioner daemon: a leaked copy used from elsewhere cannot spend theirs). Each hook
  call asks Coder once, each reconcile request runs a pass: these bound what a leaked
  credential can make the provisioner do. Over it: 429 with Retry-After.
* a request with no or a wrong credential is counted per source address
  (`KEY_PROVISIONER_LIFECYCLE_REFUSED_LIMIT`); once that is spent, such requests from there get
  429 instead of 401, with one WARNING line and one `lifecycle-refused-limited` event per window
  (a flood costs neither a log line nor a database row each). A good credential is still checked
  and served from that address: behind a reverse proxy or NAT every caller may share one
  address, and a stranger's wrong guesses must not lock out the hook and the admins. Guessing
  stays hopeless (16 random characters at least, compared in constant time).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from key_provisioner.bodies import json_object, text_field
from key_provisioner.coder_status import CoderWorkspaces
from key_provisioner.keys import LEVELS
from key_provisioner.ratelimit import RateLimiter
from key_provisioner.reconcile import Reconciler
from key_provisioner.revoke import Revoker
from key_provisioner.settings import Settings
from key_provisioner.store import Approval, Store, now_text


def fingerprint(token: str) -> str:
    """Names an admin token in the audit without revealing it."""
    return "admin:" + hashlib.sha256(token.encode()).hexdigest()[:10]


def add_lifecycle_routes(
    app: FastAPI,
    *,
    settings: Settings,
    store: Callable[[], Store],
    revoker: Revoker,
    reconciler: Reconciler | None,
    coder: CoderWorkspaces | None,
    hold: Callable[[str], AbstractAsyncContextManager[None]],
    log: logging.Logger,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    callers = RateLimiter(settings.lifecycle_rate_limit, settings.lifecycle_rate_window_s, clock)
    strangers = RateLimiter(
        settings.lifecycle_refused_limit, settings.lifecycle_refused_window_s, clock
    )
    warned = RateLimiter(1, settings.lifecycle_refused_window_s, clock)  # one line per window

    def error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    def address_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def too_many(wait: float, what: str) -> JSONResponse:
        seconds = max(math.ceil(wait), 1)
        return error(429, f"{what}: try again in {seconds} s", {"Retry-After": str(seconds)})

    def admin_of(request: Request) -> str | None:
        token = _bearer(request)
        for known in settings.admin_tokens:
            if token and hmac.compare_digest(token.encode(), known.encode()):
                return fingerprint(known)
        return None

    def refused(request: Request) -> JSONResponse:
        """No or a wrong credential: counted per source address (never in a caller's budget)."""
        address = address_of(request)
        if (wait := strangers.check(address)) is not None:
            if warned.check(address) is None:
                store().event("lifecycle-refused-limited", "*", address, path=request.url.path)
                log.warning(
                    "too many refused lifecycle requests from %s: answered 429 for %d s",
                    address,
                    max(math.ceil(wait), 1),
                )
            return too_many(wait, "too many refused requests from this address")
        if not settings.admin_tokens and not request.url.path.startswith("/api/v1/keys/"):
            return error(403, "no admin tokens are configured (KEY_PROVISIONER_ADMIN_TOKENS)")
        return error(401, "unauthorized")

    def over_budget(who: str, request: Request) -> JSONResponse | None:
        """A known caller's own budget (the hook secret's per source address)."""
        key = f"{who}@{address_of(request)}" if who == "delete-hook" else who
        if (wait := callers.check(key)) is None:
            return None
        log.warning("rate limited: %s (lifecycle routes)", key)
        return too_many(wait, "too many requests for this credential")

    def admin_gate(request: Request) -> str | JSONResponse:
        """The admin calling, or the answer that refuses the call (no admin credential, or an
        admin over their budget)."""
        if (who := admin_of(request)) is None:
            return refused(request)
        return over_budget(who, request) or who

    @app.post("/api/v1/keys/workspace/{workspace_id}/revoke")
    async def hook_revoke(workspace_id: str, request: Request) -> JSONResponse:
        if not _valid_id(workspace_id):
            return error(400, "a workspace id is 1 to 200 printable characters")
        token = _bearer(request)
        hook = bool(
            token
            and settings.revoke_secret
            and hmac.compare_digest(token.encode(), settings.revoke_secret.encode())
        )
        who = "delete-hook" if hook else admin_of(request)
        if who is None:
            return refused(request)
        if (limited := over_budget(who, request)) is not None:
            return limited
        if coder is None:
            return error(
                503, "Coder is not configured (CODER_URL), so a deletion cannot be confirmed"
            )
        async with coder.client() as client:
            said = await coder.state(client, workspace_id)
        if said.state in ("gone", "deleting"):
            async with hold(workspace_id.lower()):
                revoked = await revoker.revoke_workspace(workspace_id, "workspace-deleted", who)
            return JSONResponse(
                {
                    "revoked": True,
                    "already": not revoked,
                    "workspace_id": workspace_id,
                    "coder": said.state,
                }
            )
        store().event(
            "revoke-hook-refused", workspace_id, who, coder=said.state, detail=said.detail
        )
        log.warning(
            "delete hook for workspace=%s refused: Coder says %s (%s)",
            workspace_id,
            said.state,
            said.detail,
        )
        if said.state == "present":
            return error(
                409,
                f"Coder says workspace {workspace_id} is not being deleted "
                f"({said.detail}): its key is kept",
            )
        return error(
            503,
            f"Coder could not confirm that workspace {workspace_id} is deleted "
            f"({said.detail}); the reconcile loop revokes it once Coder says so",
        )

    async def admin_request(workspace_id: str, request: Request) -> tuple[str, dict[str, Any]] | JSONResponse:
        """(admin, body) of an admin's call about one workspace, or the answer that refuses it:
        a bad id, no admin credential, or an admin over their budget."""
        if not _valid_id(workspace_id):
            return error(400, "a workspace id is 1 to 200 printable characters")
        who = admin_gate(request)
        if isinstance(who, JSONResponse):
            return who
        return who, await json_object(request)

    @app.post("/api/v1/admin/workspaces/{workspace_id}/revoke")
    async def admin_revoke(workspace_id: str, request: Request) -> JSONResponse:
        let_in = await admin_request(workspace_id, request)
        if isinstance(let_in, JSONResponse):
            return let_in
        who, body = let_in
        by, reason = text_field(body, "by", 500), text_field(body, "reason", 500) or "admin"
        if not by:
            return error(400, 'say who revokes: {"by": "<your name>", "reason": "…"}')
        async with hold(workspace_id.lower()):
            revoked = await revoker.revoke_workspace(
                workspace_id, f"admin: {reason}", f"{who} ({by})"
            )
        return JSONResponse({"revoked": True, "already": not revoked, "workspace_id": workspace_id})

    @app.post("/api/v1/admin/workspaces/{workspace_id}/level")
    async def approve_level(workspace_id: str, request: Request) -> JSONResponse:
        let_in = await admin_request(workspace_id, request)
        if isinstance(let_in, JSONResponse):
            return let_in
        who, body = let_in
        level, by, reason = (text_field(body, name, 500) for name in ("level", "by", "reason"))
        if level not in LEVELS or not by:
            return error(
                400,
                f'send {{"level": one of {", ".join(LEVELS)}, "by": "<your name>", "reason": "…"}}',
            )
        approval = record_approval(
            store(), workspace_id, level, f"{who} ({by})", reason, settings.approval_ttl_s, log
        )
        return JSONResponse(
            {"workspace_id": workspace_id, "level": level, "expires_at": approval.expires_at}
        )

    @app.get("/api/v1/admin/reconcile")
    async def reconcile_status(request: Request) -> JSONResponse:
        if isinstance(refusal := admin_gate(request), JSONResponse):
            return refusal
        if reconciler is None:
            return error(404, "no reconcile loop: CODER_URL is not configured")
        return JSONResponse(reconciler.status())

    @app.post("/api/v1/admin/reconcile")
    async def reconcile_now(request: Request) -> JSONResponse:
        if isinstance(refusal := admin_gate(request), JSONResponse):
            return refusal
        if reconciler is None:
            return error(404, "no reconcile loop: CODER_URL is not configured")
        return JSONResponse((await reconciler.run_pass()).to_json())


def record_approval(
    store: Store,
    workspace_id: str,
    level: str,
    by: str,
    reason: str,
    ttl_s: float,
    log: logging.Logger,
) -> Approval:
    """Store (and audit) an admin's consent to `level` for one workspace (API and CLI)."""
    now = datetime.now(UTC)
    approval = Approval(
        workspace_id.lower(),
        level,
        by[:200],
        reason[:500],
        now_text(),
        (now + timedelta(seconds=ttl_s)).isoformat(timespec="seconds"),
    )
    store.approve(approval)
    store.event(
        "level-approved",
        workspace_id,
        by[:200],
        level=level,
        reason=reason[:500],
        expires_at=approval.expires_at,
    )
    log.warning("level %s approved for workspace=%s by %s: %s", level, workspace_id, by, reason)
    return approval


def _valid_id(workspace_id: str) -> bool:
    return 0 < len(workspace_id) <= 200 and all("!" <= c <= "~" for c in workspace_id)


def _bearer(request: Request) -> str | None:
    scheme, _, value = (request.headers.get("authorization") or "").partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None
