"""schemathesis against the server's own OpenAPI: no 5xx, and every status, header and body the
server answers is the one the schema documents, on SQLite and PostgreSQL.

Every generated request is sent twice: with the credential its route needs (admin token, the
enrollment secret, a real workspace token with the report's workspace set to it, so that
generated reports reach the database) and with none. WA_SCHEMATHESIS_EXAMPLES (default 25) sets
how many examples per operation; the long mode uses a few hundred.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (the server's test extra)")
from hypothesis import HealthCheck, settings
from schemathesis import checks

from tests.server.conftest import ADMIN, SECRET, make_settings
from workspace_agent import wire

EXAMPLES = int(os.environ.get("WA_SCHEMATHESIS_EXAMPLES", "25"))
WORKSPACE = "ws-schemathesis"
EXCLUDED = [
    # GET …/workspaces/{id:path} serves every path under /workspaces/ (ids may hold "/"), so GET
    # on ".../x/revoke" is the detail of workspace "x/revoke" (401 without a token), not a 405,
    # and a 405 there names GET: a consequence of the id format, not a wrong answer.
    checks.unsupported_method,
    checks.allow_header_conformance,
    # The server refuses some schema-valid reports on purpose, with a 4xx and a sentence: a rule
    # id repeated in one report, an unknown wire_version, a body over its size limit (each tested
    # in test_server_routes). "Valid data must be accepted" does not hold for those.
    checks.positive_data_acceptance,
]


@pytest.fixture
def drift_app(db_url: str) -> tuple[Any, str]:
    """The app on a fresh database, and the token of one enrolled workspace."""
    from workspace_agent_server.app import create_app

    app = create_app(make_settings(db_url, api_docs="admin"))
    return app, _enroll(app)


@pytest.fixture
def api_schema(drift_app: tuple[Any, str]) -> Any:
    # The description is for admins only (issue 15): fetched as an admin.
    return schemathesis.openapi.from_asgi(
        "/openapi.json", drift_app[0], headers={"Authorization": f"Bearer {ADMIN}"}
    )


def _enroll(app: Any) -> str:
    import asyncio

    import httpx

    async def enroll() -> str:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://drift.test") as client:
            answer = await client.post(
                wire.ENROLL_PATH, headers={"Authorization": f"Bearer {SECRET}"},
                json={"workspace": {"id": WORKSPACE, "name": "st", "owner": "st"}, "agent_version": "0"})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["workspace_token"])

    return asyncio.run(enroll())


schema = schemathesis.pytest.from_fixture("api_schema")


def credentials(case: Any, token: str) -> dict[str, str]:
    if case.path.startswith(wire.WORKSPACES_PATH) or case.path == "/metrics":
        return {"Authorization": f"Bearer {ADMIN}"}
    if case.path == wire.ENROLL_PATH:
        return {"Authorization": f"Bearer {SECRET}"}
    if case.path == wire.REPORTS_PATH:
        body = case.body
        positive = case.meta is None or not case.meta.generation.mode.is_negative
        if positive and isinstance(body, dict) and isinstance(body.get("workspace"), dict):
            body["workspace"]["id"] = WORKSPACE  # so that valid reports are stored, not refused
        return {"Authorization": f"Bearer {token}"}
    return {}


@pytest.mark.slow
@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_as_documented(case: Any, drift_app: tuple[Any, str]) -> None:
    token = drift_app[1]
    case.call_and_validate(headers=credentials(case, token), excluded_checks=EXCLUDED)
    case.call_and_validate(excluded_checks=EXCLUDED)  # and with no credential at all
