"""The authorization matrix: every credential against every route, one test per cell, on SQLite
and PostgreSQL. A refused request gets the right status and reason and changes nothing; a
refused page shows nothing of the fleet."""

from __future__ import annotations

from typing import Any

import pytest

from tests.server.conftest import ADMIN, SECRET, Api, make_report, rule
from workspace_agent import wire

# Left out of `scripts/test --fast`: the authorization matrix: a server and database per cell.
pytestmark = [pytest.mark.anyio, pytest.mark.slow]

# Credentials, as the Authorization header (or cookie) a client would send.
CREDENTIALS = [
    "none",
    "not bearer",  # Authorization: Basic …
    "empty bearer",
    "unknown token",  # looks like a workspace token, never issued
    "garbage token",
    "other workspace's token",  # ws-b's own token, used on ws-a
    "revoked token",  # ws-r's token after an admin revoked it
    "own workspace token",  # ws-a's token
    "enrollment secret",
    "admin token",
    "forged session cookie",
    "admin session cookie",
]

# route → expected (status, reason) per credential; reason None: not checked (pages, successes).
R = dict[str, tuple[int, str | None]]


UNAUTHORIZED = (401, "unauthorized")
FORBIDDEN = (403, "forbidden")
OK = (200, None)
ADMIN_API: R = {
    "none": UNAUTHORIZED, "not bearer": UNAUTHORIZED, "empty bearer": UNAUTHORIZED,
    "unknown token": UNAUTHORIZED, "garbage token": UNAUTHORIZED,
    "other workspace's token": FORBIDDEN, "revoked token": FORBIDDEN, "own workspace token": FORBIDDEN,
    "enrollment secret": FORBIDDEN, "admin token": OK, "forged session cookie": UNAUTHORIZED,
    "admin session cookie": OK,
}
EXPECTED: dict[str, R] = {
    "POST enroll": {**{c: UNAUTHORIZED for c in CREDENTIALS}, "enrollment secret": OK},
    "POST report for ws-a": {
        **ADMIN_API,
        "other workspace's token": (403, "wrong_workspace"),
        "revoked token": (401, "revoked"),
        "own workspace token": OK,
        "admin token": FORBIDDEN,
        "admin session cookie": UNAUTHORIZED,  # a browser session cannot post reports
    },
    "GET workspaces": ADMIN_API,
    "GET workspace ws-a": ADMIN_API,
    "POST revoke ws-a": ADMIN_API,
    # Pages: no credential → sign-in redirect; a wrong one → an error page; never fleet data.
    "page fleet": {**{c: (401, None) for c in CREDENTIALS},
                   "none": (303, None), "not bearer": (303, None), "empty bearer": (303, None),
                   "forged session cookie": (303, None),
                   "other workspace's token": (403, None), "revoked token": (403, None),
                   "own workspace token": (403, None), "enrollment secret": (403, None),
                   "admin token": (200, None), "admin session cookie": (200, None)},
}
EXPECTED["page workspace ws-a"] = EXPECTED["page fleet"]

CELLS = [(route, cred) for route in EXPECTED for cred in CREDENTIALS]


async def _setup(api: Api) -> dict[str, str]:
    tokens = {ws: await api.enroll(ws, owner="alice") for ws in ("ws-a", "ws-b", "ws-r")}
    assert (await api.report(tokens["ws-a"], make_report("ws-a", [rule("secret.rule", "drift")]))).status_code == 200
    assert (await api.admin(f"{wire.WORKSPACES_PATH}/ws-r/revoke", method="POST")).status_code == 200
    return tokens


def _auth(cred: str, tokens: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(headers, cookies) for a credential."""
    from pydantic import SecretStr
    from workspace_agent_server import auth

    bearer = {
        "unknown token": auth.WORKSPACE_TOKEN_PREFIX + "x" * 43,
        "garbage token": "'; DROP TABLE workspaces; --",
        "other workspace's token": tokens["ws-b"],
        "revoked token": tokens["ws-r"],
        "own workspace token": tokens["ws-a"],
        "enrollment secret": SECRET,
        "admin token": ADMIN,
    }
    if cred in bearer:
        return {"Authorization": f"Bearer {bearer[cred]}"}, {}
    if cred == "not bearer":
        return {"Authorization": f"Basic {ADMIN}"}, {}
    if cred == "empty bearer":
        return {"Authorization": "Bearer "}, {}
    if cred == "forged session cookie":
        forged = auth.make_session(SecretStr("not-the-admin-token-at-all"), 1)
        return {}, {auth.SESSION_COOKIE: forged}
    if cred == "admin session cookie":
        return {}, {auth.SESSION_COOKIE: auth.make_session(SecretStr(ADMIN), 1)}
    return {}, {}


async def _call(api: Api, route: str, headers: dict[str, str], cookies: dict[str, str]) -> Any:
    client = api.client
    client.cookies.clear()
    for name, value in cookies.items():
        client.cookies.set(name, value)
    if route == "POST enroll":
        body = {"workspace": {"id": "ws-new", "name": "n", "owner": "o"}, "agent_version": "0"}
        return await client.post(wire.ENROLL_PATH, json=body, headers=headers)
    if route == "POST report for ws-a":
        return await client.post(wire.REPORTS_PATH, json=make_report("ws-a", [rule("secret.rule", "compliant")]),
                                 headers=headers)
    path = {
        "GET workspaces": wire.WORKSPACES_PATH,
        "GET workspace ws-a": f"{wire.WORKSPACES_PATH}/ws-a",
        "page fleet": "/",
        "page workspace ws-a": "/workspaces/ws-a",
    }.get(route)
    if path is not None:
        return await client.get(path, headers=headers)
    assert route == "POST revoke ws-a"
    return await client.post(f"{wire.WORKSPACES_PATH}/ws-a/revoke", headers=headers)


@pytest.mark.parametrize(("route", "cred"), CELLS, ids=[f"{r} | {c}" for r, c in CELLS])
async def test_cell(api: Api, route: str, cred: str) -> None:
    tokens = await _setup(api)
    before = api.snapshot()
    headers, cookies = _auth(cred, tokens)
    response = await _call(api, route, headers, cookies)
    status, reason = EXPECTED[route][cred]
    assert response.status_code == status, (route, cred, response.text[:300])
    if route.startswith("page"):
        if status != 200:
            assert "secret.rule" not in response.text and "alice" not in response.text
        return
    if reason is not None:
        assert response.json()["reason"] == reason, response.json()
    if status >= 400:
        assert api.snapshot() == before, "a refused request changed the database"
        assert set(response.json()) >= {"detail", "reason"} and response.json()["detail"]
