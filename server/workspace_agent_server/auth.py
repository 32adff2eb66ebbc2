"""Tokens and admin sessions. Workspace tokens are random and stored only as a SHA-256 hash (they
have 256 bits of entropy, so a fast hash is enough). Admin sessions are a signed cookie that dies
when its admin token is removed from the settings.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from pydantic import SecretStr

WORKSPACE_TOKEN_PREFIX = "wat_"
SESSION_COOKIE = "drift_admin"


def new_workspace_token() -> str:
    return WORKSPACE_TOKEN_PREFIX + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def bearer(header: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header, or None."""
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def matches(candidate: str, secret: SecretStr | None) -> bool:
    return secret is not None and hmac.compare_digest(
        candidate.encode(), secret.get_secret_value().encode()
    )


def is_admin(candidate: str, admin_tokens: list[SecretStr]) -> bool:
    # Compare against every token (no early exit) so timing does not tell which one matched.
    found = False
    for token in admin_tokens:
        found |= matches(candidate, token)
    return found


def _token_id(token: SecretStr) -> str:
    return token_hash(token.get_secret_value())[:16]


def make_session(token: SecretStr, hours: int, now: float | None = None) -> str:
    """Cookie value `<token id>.<expiry>.<signature>`, signed with the admin token itself."""
    expiry = int((time.time() if now is None else now) + hours * 3600)
    payload = f"{_token_id(token)}.{expiry}"
    sig = hmac.new(token.get_secret_value().encode(), payload.encode(), hashlib.sha256).hexdigest()
    return f"{payload}.{sig}"


def check_session(
    cookie: str | None, admin_tokens: list[SecretStr], now: float | None = None
) -> bool:
    if not cookie or cookie.count(".") != 2:
        return False
    token_id, expiry, sig = cookie.split(".")
    if not expiry.isdigit() or int(expiry) < (time.time() if now is None else now):
        return False
    for token in admin_tokens:
        if hmac.compare_digest(_token_id(token), token_id):
            want = hmac.new(
                token.get_secret_value().encode(), f"{token_id}.{expiry}".encode(), hashlib.sha256
            ).hexdigest()
            return hmac.compare_digest(want, sig)
    return False


def sign_body(body: bytes, secret: SecretStr) -> str:
    """The `X-Drift-Signature` header value of a webhook body."""
    digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
