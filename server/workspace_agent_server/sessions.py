"""Admin sign-in sessions, kept in the database: the cookie is a random id (only its hash is
stored), so signing out deletes the row and the cookie is dead at once, in every server process.
A session also dies with its admin token (removed from DRIFT_ADMIN_TOKENS) and at its expiry.

Each session has a CSRF token: every state-changing request signed by the cookie must send it
(forms as the `csrf` field, API calls as the `X-CSRF-Token` header) and come from an allowed
Origin. SameSite=Strict alone does not stop a request from a sibling subdomain (a Coder app).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from pydantic import SecretStr
from sqlalchemy import Connection, delete, insert, select

from . import auth
from .db import admin_sessions

CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    id_hash: str
    admin_token_id: str
    csrf: str
    expires_at: datetime


def admin_token_id(token: SecretStr) -> str:
    return auth.token_hash(token.get_secret_value())[:16]


def create(conn: Connection, token: SecretStr, now: datetime, hours: float) -> tuple[str, Session]:
    """A new session for `token`: (the cookie value, the session)."""
    cookie = secrets.token_urlsafe(32)
    session = Session(
        id_hash=auth.token_hash(cookie),
        admin_token_id=admin_token_id(token),
        csrf=secrets.token_urlsafe(32),
        expires_at=now + timedelta(hours=hours),
    )
    conn.execute(
        insert(admin_sessions).values(
            id_hash=session.id_hash,
            admin_token_id=session.admin_token_id,
            csrf=session.csrf,
            created_at=now,
            expires_at=session.expires_at,
        )
    )
    return cookie, session


def lookup(
    conn: Connection, cookie: str | None, admin_tokens: list[SecretStr], now: datetime
) -> Session | None:
    """The live session of this cookie: stored, not expired, and its admin token still set."""
    if not cookie or len(cookie) > 100:
        return None
    row = conn.execute(
        select(admin_sessions).where(admin_sessions.c.id_hash == auth.token_hash(cookie))
    ).first()
    if row is None or row.expires_at <= now:
        return None
    if not any(hmac.compare_digest(admin_token_id(t), row.admin_token_id) for t in admin_tokens):
        return None
    return Session(row.id_hash, row.admin_token_id, row.csrf, row.expires_at)


def end(conn: Connection, session: Session) -> None:
    conn.execute(delete(admin_sessions).where(admin_sessions.c.id_hash == session.id_hash))


def prune(conn: Connection, now: datetime) -> None:
    conn.execute(delete(admin_sessions).where(admin_sessions.c.expires_at <= now))


def csrf_problem(
    session: Session,
    sent_token: str | None,
    origin: str | None,
    referer: str | None,
    host: str | None,
    allowed: list[str],
) -> str | None:
    """Why a cookie-signed state change must be refused (None: it may go ahead)."""
    seen = origin if origin and origin != "null" else _origin_of(referer)
    if seen is None:
        return "the request has no Origin header (a browser sends one with every form)"
    wanted = allowed or ([f"http://{host}", f"https://{host}"] if host else [])
    if seen.rstrip("/").lower() not in {w.lower() for w in wanted}:
        return f"the request comes from another site ({seen[:100]})"
    if not sent_token or not hmac.compare_digest(sent_token.encode(), session.csrf.encode()):
        return "the request lacks this session's CSRF token (reload the page and try again)"
    return None


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """For requests without a session (sign-in): no Origin (not a browser) or an allowed one."""
    if not origin:
        return True
    wanted = allowed or ([f"http://{host}", f"https://{host}"] if host else [])
    return origin.rstrip("/").lower() in {w.lower() for w in wanted}


def _origin_of(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else None
