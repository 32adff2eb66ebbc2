"""Tokens. Workspace tokens are random and stored only as a SHA-256 hash (they have 256 bits of
entropy, so a fast hash is enough). Admin sign-in sessions are server-side: sessions.py.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

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


def sign_body(body: bytes, secret: SecretStr) -> str:
    """The `X-Drift-Signature` header value of a webhook body."""
    digest = hmac.new(secret.get_secret_value().encode(), body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"
