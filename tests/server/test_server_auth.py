"""Admin session cookies and webhook signatures."""

from __future__ import annotations

import hashlib
import hmac
import time

from pydantic import SecretStr
from workspace_agent_server import auth

A = SecretStr("admin-token-Ahx8Lq2Vb7Rt9Wz3")
B = SecretStr("admin-token-Bqq2Lm5Xc8Vn1Ty6")


def test_session_roundtrip_expiry_and_tampering() -> None:
    now = time.time()
    cookie = auth.make_session(A, hours=1, now=now)
    assert A.get_secret_value() not in cookie
    assert auth.check_session(cookie, [B, A], now=now)
    assert not auth.check_session(cookie, [A], now=now + 3601)  # expired
    assert not auth.check_session(cookie, [B], now=now)  # its token was removed from settings
    token_id, expiry, sig = cookie.split(".")
    assert not auth.check_session(f"{token_id}.{int(expiry) + 9999}.{sig}", [A], now=now)
    assert not auth.check_session(f"{token_id}.{expiry}.{'0' * 64}", [A], now=now)
    for junk in (None, "", "a.b", "x.y.z", "...."):
        assert not auth.check_session(junk, [A], now=now)


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
