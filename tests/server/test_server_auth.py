"""Admin session cookies and webhook signatures."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime, timedelta

from pydantic import SecretStr
from workspace_agent_server import auth

A = SecretStr("admin-token-Ahx8Lq2Vb7Rt9Wz3")
B = SecretStr("admin-token-Bqq2Lm5Xc8Vn1Ty6")


def test_session_lives_in_the_database_until_its_end_expiry_or_token_removal(db_url: str) -> None:
    """Server-side sessions (issue 15): the cookie is a random id; ending the session, its expiry
    or removing its admin token each make the same cookie worthless at once."""
    from workspace_agent_server import sessions
    from workspace_agent_server.db import make_engine, migrate, write_tx

    engine = make_engine(db_url)
    migrate(engine)
    now = datetime.now(UTC)
    try:
        with write_tx(engine) as conn:
            cookie, made = sessions.create(conn, A, now, hours=1)
        assert A.get_secret_value() not in cookie and len(cookie) >= 40
        with engine.connect() as conn:
            found = sessions.lookup(conn, cookie, [B, A], now)
            assert found is not None and found.csrf == made.csrf
            assert sessions.lookup(conn, cookie, [A], now + timedelta(hours=1)) is None  # expired
            assert sessions.lookup(conn, cookie, [B], now) is None  # its token was removed
            for junk in (None, "", "x" * 43, cookie[:-1], "y" * 500):
                assert sessions.lookup(conn, junk, [A], now) is None
        with write_tx(engine) as conn:
            sessions.end(conn, made)
        with engine.connect() as conn:
            assert sessions.lookup(conn, cookie, [A], now) is None  # signed out: dead at once
    finally:
        engine.dispose()


def test_bearer_and_token_kinds() -> None:
    assert auth.bearer("Bearer abc") == "abc" and auth.bearer("bearer  abc ") == "abc"
    assert auth.bearer("Basic abc") is None and auth.bearer("Bearer ") is None
    assert auth.bearer(None) is None
    assert auth.is_admin(A.get_secret_value(), [B, A]) and not auth.is_admin("x", [A])
    token = auth.new_workspace_token()
    assert token.startswith(auth.WORKSPACE_TOKEN_PREFIX) and token != auth.new_workspace_token()
    assert auth.token_hash(token) == hashlib.sha256(token.encode()).hexdigest()


def test_webhook_signature() -> None:
    body = b'{"events":[]}'
    want = hmac.new(b"hook-secret-Qm3Zr8Tn2Wx6", body, hashlib.sha256).hexdigest()
    assert auth.sign_body(body, SecretStr("hook-secret-Qm3Zr8Tn2Wx6")) == f"sha256={want}"
