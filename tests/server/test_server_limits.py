"""Issue 15, in-process: body limits on every route, rate limits counted after authentication and
keyed on who was proven, the Coder lookup budget, and the API description and /metrics closed.

The limits are the same code on both databases, so these run on SQLite (the enrollment race and
the sessions, which the database decides, run on both: test_server_enroll_race.py,
test_server_sessions.py).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.server.conftest import ADMIN, SECRET, Api
from tests.standins.coder_agent_api import CoderStandin, run_coder
from workspace_agent import wire

pytestmark = pytest.mark.anyio


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'drift.db'}"


@pytest.fixture
def coder() -> Iterator[CoderStandin]:
    with run_coder() as standin:
        yield standin


def client_from(api: Api, address: str) -> httpx.AsyncClient:
    """Another client of the same app, seen as coming from `address`."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://drift.test")


def enroll_body(workspace_id: str) -> dict[str, Any]:
    return {"workspace": {"id": workspace_id, "name": "n", "owner": "o"}, "agent_version": "0.1.0"}


def every_route(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route the app serves, path parameters filled in."""
    found = []
    routes = []
    for item in app.routes:  # FastAPI keeps included routers whole (original_router)
        inner = getattr(item, "original_router", None)
        routes.extend(inner.routes if inner is not None else [item])
    for route in routes:
        for method in sorted(getattr(route, "methods", None) or ()):
            if method == "HEAD":
                continue
            path = route.path.replace("{workspace_id:path}", "ws-1").replace("{workspace_id}", "ws-1")
            found.append((method, path))
    return found


# --- 1. bodies ----------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_every_route_refuses_a_body_over_its_limit_before_reading_it(
    api_factory: Callable[..., Any], declared: bool
) -> None:
    """Finding: POST /login read the whole body before slicing it. Now every route answers 413
    with the usual error body, whether the size is declared or only seen while streaming."""
    async with api_factory(api_docs="admin") as api:
        routes = every_route(api.app)
        assert ("POST", "/login") in routes and ("GET", "/metrics") in routes
        assert len(routes) >= 12
        for method, path in routes:
            size = 2 * 1024 * 1024  # over every route's limit (reports: 512 KiB)
            pulled = 0

            async def body(size: int = size) -> AsyncIterator[bytes]:
                nonlocal pulled
                for _ in range(size // 65536):
                    pulled += 65536
                    yield b"x" * 65536

            if declared:
                answer = await api.client.request(method, path, content=b"x" * size)
            else:
                answer = await api.client.request(method, path, content=body())
                # the refusal came once the limit was crossed, not after the whole body
                assert pulled < size, (method, path, pulled)
            if declared or answer.status_code == 413:
                assert answer.status_code == 413, (method, path, answer.text[:200])
                assert answer.json()["reason"] == "too_large" and answer.json()["detail"]
            # else: answered without reading the body (a 401, or a GET that takes none): fine,
            # as long as the body was not read (above) and the connection is not kept for it
            assert answer.headers["connection"] == "close", (method, path)


async def test_a_refused_report_body_is_counted_as_too_large(api: Api) -> None:
    token = await api.enroll("ws-1")
    answer = await api.client.post(
        wire.REPORTS_PATH,
        content=b"x" * (api.app.state.ctx.settings.max_body_bytes + 1),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    metrics = (await api.admin("/metrics")).text
    assert 'drift_reports_rejected_total{reason="too_large"} 1' in metrics


# --- 2. rate limits -----------------------------------------------------------------------------


async def test_mass_enrollment_with_the_secret_is_limited_per_source_address(
    api_factory: Callable[..., Any],
) -> None:
    """Finding: 3,000 shared-secret enrollments were accepted in 8 s. Now each source address has
    its budget; requests refused for a wrong secret spend none of it."""
    async with api_factory(enroll_rate_limit=5) as api:
        secret = {"Authorization": f"Bearer {SECRET}"}
        async with client_from(api, "10.0.0.1") as one, client_from(api, "10.0.0.2") as two:
            for _ in range(20):  # refused (401): counted nowhere
                bad = await two.post(
                    wire.ENROLL_PATH,
                    json=enroll_body("x"),
                    headers={"Authorization": "Bearer not-the-secret-at-all"},
                )
                assert bad.status_code == 401
            statuses = [
                (await one.post(wire.ENROLL_PATH, json=enroll_body(f"ws-{i}"), headers=secret))
                for i in range(8)
            ]
            assert [a.status_code for a in statuses] == [200] * 5 + [429] * 3
            limited = statuses[-1]
            assert limited.json()["reason"] == "rate_limited"
            assert 1 <= int(limited.headers["retry-after"]) <= 60
            # another address still enrolls, the whole budget intact
            others = [
                (await two.post(wire.ENROLL_PATH, json=enroll_body(f"wt-{i}"), headers=secret))
                for i in range(5)
            ]
            assert [a.status_code for a in others] == [200] * 5
        assert api.rows()["workspaces"] == 10


async def test_a_verified_workspace_has_its_own_enrollment_budget(
    api_factory: Callable[..., Any], coder: CoderStandin
) -> None:
    async with api_factory(
        enroll_rate_limit=3, coder_url=coder.url, coder_api_token=coder.api_token
    ) as api:
        ws = coder.add_workspace()
        async with client_from(api, "10.0.0.9") as attacker:
            secret = {"Authorization": f"Bearer {SECRET}"}
            for i in range(3):
                await attacker.post(wire.ENROLL_PATH, json=enroll_body(f"a-{i}"), headers=secret)
            spent = await attacker.post(wire.ENROLL_PATH, json=enroll_body("a-9"), headers=secret)
            assert spent.status_code == 429
            # the attacker's claims of the victim with a wrong token are refused and spend nothing
            for _ in range(5):
                refused = await attacker.post(
                    wire.ENROLL_PATH,
                    json=enroll_body(ws.id),
                    headers={"Coder-Agent-Token": str(uuid.uuid4())},
                )
                assert refused.status_code == 403
        verified = [
            await api.client.post(
                wire.ENROLL_PATH,
                json=enroll_body(ws.id),
                headers={"Coder-Agent-Token": ws.agent.token},
            )
            for _ in range(4)
        ]
        assert [a.status_code for a in verified] == [200, 200, 200, 429]
        assert verified[0].json()["identity_mode"] == "coder-agent-token"


@pytest.mark.slow
async def test_fresh_workspace_ids_cannot_amplify_coder_lookups(
    api_factory: Callable[..., Any], coder: CoderStandin
) -> None:
    """Finding: every fresh workspace id cost two Coder API calls. Now which agent holds a token
    is asked once (cached), and the lookups one address can cause are limited."""
    async with api_factory(
        coder_url=coder.url, coder_api_token=coder.api_token, coder_lookup_rate_limit=10
    ) as api:
        mine = coder.add_workspace(owner="mallory")
        statuses = []
        for _ in range(60):  # mallory's own, valid agent token, claiming ever new workspace ids
            answer = await api.client.post(
                wire.ENROLL_PATH,
                json=enroll_body(str(uuid.uuid4())),
                headers={"Coder-Agent-Token": mine.agent.token},
            )
            statuses.append(answer.status_code)
        for _ in range(60):  # and unknown tokens
            answer = await api.client.post(
                wire.ENROLL_PATH,
                json=enroll_body(str(uuid.uuid4())),
                headers={"Coder-Agent-Token": str(uuid.uuid4())},
            )
            statuses.append(answer.status_code)
        asked = len(coder.requests)
        assert asked <= 10, f"{asked} Coder API calls for 120 claims"
        assert set(statuses) == {403, 429} and statuses.count(429) >= 100
        # another address is not limited by mallory's flood: its own workspace enrolls
        ws = coder.add_workspace()
        async with client_from(api, "10.0.0.3") as other:
            ok = await other.post(
                wire.ENROLL_PATH,
                json=enroll_body(ws.id),
                headers={"Coder-Agent-Token": ws.agent.token},
            )
        assert ok.status_code == 200, ok.text


async def test_failed_sign_ins_are_limited_per_source_address(
    api_factory: Callable[..., Any],
) -> None:
    async with api_factory(login_failure_limit=3) as api:
        wrong = [
            (await api.client.post("/login", data={"token": f"guess-{i}", "next": "/"})).status_code
            for i in range(5)
        ]
        assert wrong == [401, 401, 401, 429, 429]
        # from there, even the right token is not compared now (a guesser learns nothing)
        right = await api.client.post("/login", data={"token": ADMIN, "next": "/"})
        assert right.status_code == 429 and "drift_admin" not in right.headers.get("set-cookie", "")
        async with client_from(api, "10.0.0.7") as admin:
            ok = await admin.post("/login", data={"token": ADMIN, "next": "/"})
        assert ok.status_code == 303


# --- 5. open surfaces ---------------------------------------------------------------------------


async def test_docs_openapi_and_metrics_are_closed_by_default(
    api_factory: Callable[..., Any],
) -> None:
    """Finding: /docs, /redoc, /openapi.json and /metrics answered without auth."""
    async with api_factory(metrics_token="metrics-token-Qz8Lm3Vb7Tn2") as api:
        for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
            answer = await api.client.get(path)
            assert answer.status_code == 404, (path, answer.text[:200])
            answer = await api.admin(path)
            assert answer.status_code == 404, path
        token = await api.enroll("ws-1")
        assert (await api.client.get("/metrics")).status_code == 401
        as_workspace = await api.client.get(
            "/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        assert as_workspace.status_code == 403
        scraped = await api.client.get(
            "/metrics", headers={"Authorization": "Bearer metrics-token-Qz8Lm3Vb7Tn2"}
        )
        assert scraped.status_code == 200 and "drift_workspaces" in scraped.text
        assert (await api.admin("/metrics")).status_code == 200


async def test_api_docs_are_for_admins_only_without_any_script(
    api_factory: Callable[..., Any],
) -> None:
    async with api_factory(api_docs="admin") as api:
        assert (await api.client.get("/openapi.json")).status_code == 401
        assert (await api.client.get("/redoc")).status_code == 404
        spec = await api.admin("/openapi.json")
        assert spec.status_code == 200 and wire.REPORTS_PATH in spec.json()["paths"]
        assert (await api.client.get("/docs")).status_code == 303  # to the sign-in page
        page = await api.admin("/docs")
        assert page.status_code == 200 and wire.REPORTS_PATH in page.text
        csp = page.headers["content-security-policy"]
        assert csp.startswith("default-src 'none'") and "script-src" not in csp
        assert "<script" not in page.text.lower() and "cdn" not in page.text.lower()
        token = await api.enroll("ws-1")
        as_workspace = await api.client.get(
            "/openapi.json", headers={"Authorization": f"Bearer {token}"}
        )
        assert as_workspace.status_code == 403
