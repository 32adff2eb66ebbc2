"""Issue 15, finding 4: the admin session. A revoke sent with the admin's cookie from another
origin was accepted, sign-out could be forced from another site, and the cookie kept working for
its 12 hours after sign-out. Sessions are now server-side (on SQLite and PostgreSQL), every
cookie-signed change checks Origin and the session's CSRF token, and the lifetime is a setting.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from tests.server.conftest import ADMIN, Api
from workspace_agent import wire

pytestmark = pytest.mark.anyio
ORIGIN = "http://drift.test"
EVIL = "https://evil.example"


async def sign_in(api: Api) -> str:
    """Sign in through the form like a browser; the client keeps the cookie. The CSRF token."""
    answer = await api.client.post(
        "/login", data={"token": ADMIN, "next": "/"}, headers={"Origin": ORIGIN}
    )
    assert answer.status_code == 303, answer.text
    page = await api.client.get("/")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert found is not None, "the sign-out form carries no CSRF token"
    return found.group(1)


def revoked(api: Api, workspace_id: str) -> bool:
    import sqlalchemy as sa

    engine = sa.create_engine(api.db_url)
    try:
        with engine.connect() as conn:
            return (
                conn.execute(
                    sa.text("SELECT token_revoked_at FROM workspaces WHERE id = :i"),
                    {"i": workspace_id},
                ).scalar_one()
                is not None
            )
    finally:
        engine.dispose()


async def test_a_revoke_with_the_admin_cookie_from_another_origin_is_refused(api: Api) -> None:
    await api.enroll("ws-1")
    csrf = await sign_in(api)
    path = f"{wire.WORKSPACES_PATH}/ws-1/revoke"
    for headers in (
        {"Origin": EVIL, "X-CSRF-Token": csrf},  # a sibling subdomain's page, even with the token
        {"Origin": "null", "X-CSRF-Token": csrf},
        {"Referer": EVIL + "/x", "X-CSRF-Token": csrf},
        {"X-CSRF-Token": csrf},  # no Origin at all
        {"Origin": ORIGIN},  # right origin, no token
        {"Origin": ORIGIN, "X-CSRF-Token": "x" * 43},  # a wrong token
    ):
        answer = await api.client.post(path, headers=headers)
        assert answer.status_code == 403 and answer.json()["reason"] == "csrf", headers
        assert not revoked(api, "ws-1"), headers
    ok = await api.client.post(path, headers={"Origin": ORIGIN, "X-CSRF-Token": csrf})
    assert ok.status_code == 200 and revoked(api, "ws-1")


async def test_sign_in_from_another_origin_is_refused(api: Api) -> None:
    answer = await api.client.post(
        "/login", data={"token": ADMIN, "next": "/"}, headers={"Origin": EVIL}
    )
    assert answer.status_code == 403 and "drift_admin" not in answer.headers.get("set-cookie", "")


async def test_sign_out_cannot_be_forced_and_ends_the_session_at_once(api: Api) -> None:
    csrf = await sign_in(api)
    cookie = api.client.cookies["drift_admin"]
    # another site posts the sign-out form: refused, the session lives on
    forced = await api.client.post("/logout", data={"csrf": csrf}, headers={"Origin": EVIL})
    assert forced.status_code == 403 and "drift_admin" not in forced.headers.get("set-cookie", "")
    no_token = await api.client.post("/logout", data={}, headers={"Origin": ORIGIN})
    assert no_token.status_code == 403
    assert (await api.client.get(wire.WORKSPACES_PATH)).status_code == 200
    # the admin signs out: the very same cookie is dead at once (not after its 12 hours)
    out = await api.client.post("/logout", data={"csrf": csrf}, headers={"Origin": ORIGIN})
    assert out.status_code == 303
    api.client.cookies.set("drift_admin", cookie)
    assert (await api.client.get(wire.WORKSPACES_PATH)).status_code == 401
    assert (await api.client.get("/")).status_code == 303


async def test_the_session_lifetime_is_a_setting(api_factory: Callable[..., Any]) -> None:
    async with api_factory(session_hours=0.5) as api:
        await sign_in(api)
        cookie = (await api.client.get("/")).request.headers["cookie"]
        assert "drift_admin=" in cookie
        api.clock.advance(29 * 60)
        assert (await api.client.get(wire.WORKSPACES_PATH)).status_code == 200
        api.clock.advance(2 * 60)
        assert (await api.client.get(wire.WORKSPACES_PATH)).status_code == 401


async def test_removing_an_admin_token_ends_its_sessions(
    api_factory: Callable[..., Any],
) -> None:
    other = "admin-token-Other-9Kq2Lm5Xc8Vn"
    async with api_factory(admin_tokens=f"{ADMIN},{other}") as api:
        await sign_in(api)
        cookie = api.client.cookies["drift_admin"]
    async with api_factory(admin_tokens=other) as api:  # same database, ADMIN removed
        api.client.cookies.set("drift_admin", cookie)
        assert (await api.client.get(wire.WORKSPACES_PATH)).status_code == 401
