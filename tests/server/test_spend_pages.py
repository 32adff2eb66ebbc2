"""The spend page and API in-process: admins only, "pull now" needs the CSRF token and an allowed
Origin, hostile key metadata is escaped on the page and defused in the CSV, bad periods are a
422 with a sentence, and the master key is never shown."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from workspace_agent_server import spend_pull
from workspace_agent_server.db import write_tx
from workspace_agent_server.spend_csv import cell

from tests.server.conftest import ADMIN, Api
from tests.server.test_spend_pull import NOW, key, log

pytestmark = pytest.mark.anyio
XSS = "<script>alert(1)</script>"
FORMULA = "=HYPERLINK(\"http://evil.example\",\"x\")"
MASTER = "sk-master-Pq7Xc2Lm9Vb4Nz8R"


@pytest.fixture
def db_url(tmp_path: Path) -> str:  # the page is the same on both databases: SQLite here
    return f"sqlite:///{tmp_path / 'drift.db'}"


def seed(api: Api) -> None:
    ctx = api.app.state.ctx
    day = api.clock.now.date()
    with write_tx(ctx.engine) as conn:
        assert spend_pull.take_lease(conn, "t", 300, 60, force=True) is not None
        spend_pull.renew(conn, "t", 60)
        spend_pull.store_keys(conn, [
            key("t1", spend=9.5, workspace_name=XSS, owner=FORMULA, created_at=api.clock.now),
            key("t2", spend=0.5, key_alias="+cmd|' /C calc'!A0", created_at=api.clock.now),
        ], api.clock.now)
        conn.execute(spend_pull.spend_pull.update().values(keys_at=api.clock.now))
        spend_pull.store_day(conn, day, [log("r1", "t1", "claude-opus", 2.0, api.clock.now),
                                         log("r2", "t2", "claude-haiku", 0.5, api.clock.now)])
        spend_pull.finish(conn, "t", error=None, keys=2, log_rows=2, synced_through=day)


async def test_admins_only(api: Api) -> None:
    assert (await api.client.get("/spend")).status_code == 303  # to the sign-in page
    assert (await api.client.get("/api/v1/spend")).status_code == 401
    token = await api.enroll("ws-1")
    for path in ("/spend", "/api/v1/spend", "/api/v1/spend/budgets", "/api/v1/spend/export.csv"):
        got = await api.client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert got.status_code == 403, path
    assert (await api.client.post("/api/v1/spend/pull", headers={"Authorization": f"Bearer {token}"})).status_code == 403


async def test_hostile_metadata_is_escaped_and_defused(api: Api) -> None:
    seed(api)
    page = await api.admin("/spend", preset="today")
    assert page.status_code == 200 and XSS not in page.text and "&lt;script&gt;" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'none'")
    assert "<script" not in page.text
    exported = await api.admin("/api/v1/spend/export.csv", view="groups", group="owner", preset="today")
    owners = {r["key"] for r in csv.DictReader(io.StringIO(exported.text))}
    assert "'" + FORMULA in owners and FORMULA not in owners
    budgets = list(csv.DictReader(io.StringIO((await api.admin("/api/v1/spend/export.csv", view="budgets")).text)))
    assert {r["key_alias"] for r in budgets} == {"alias-t1", "'+cmd|' /C calc'!A0"}
    assert [float(r["percent"]) for r in budgets] == [95.0, 5.0]
    assert cell(-1.5) == -1.5 and cell("-1") == "'-1" and cell("@SUM(A1)") == "'@SUM(A1)" and cell(None) == ""


async def test_bad_periods_are_a_sentence(api: Api) -> None:
    for params in ({"from": "2026-02-30"}, {"preset": "forever"}, {"from": "2026-02-01", "to": "2026-01-01"},
                   {"group": "planet"}):
        got = await api.admin("/api/v1/spend", **params)
        assert got.status_code == 422 and got.json()["reason"] == "invalid", params
    page = await api.admin("/spend", preset="forever")
    assert page.status_code == 422 and "preset must be one of" in page.text


async def test_pull_now_needs_csrf_and_shows_the_failure(api_factory: Any) -> None:
    async with api_factory(litellm_url="http://127.0.0.1:9", litellm_master_key=MASTER, spend_pull_interval_s=3600) as api:
        signed = await api.client.post("/login", data={"token": ADMIN, "next": "/spend"})
        assert signed.status_code == 303
        page = await api.client.get("/spend")
        csrf = re.search(r'action="/spend/pull"><input type="hidden" name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        refused = await api.client.post("/spend/pull", data={"csrf": "wrong"}, headers={"Origin": "http://drift.test"})
        assert refused.status_code == 403
        other_site = await api.client.post("/spend/pull", data={"csrf": csrf.group(1)}, headers={"Origin": "http://evil.test"})
        assert other_site.status_code == 403
        api_refused = await api.client.post("/api/v1/spend/pull")  # the cookie without the header
        assert api_refused.status_code == 403
        done = await api.client.post("/spend/pull", data={"csrf": csrf.group(1)}, headers={"Origin": "http://drift.test"})
        assert done.status_code == 303 and done.headers["location"] == "/spend"
        ctx = api.app.state.ctx
        while ctx.spend_task is None or not ctx.spend_task.done():
            import asyncio

            await asyncio.sleep(0.05)
        page = await api.client.get("/spend")
        assert 'data-state="failing"' in page.text and "cannot be reached" in page.text
        assert MASTER not in page.text and MASTER not in (await api.client.get("/api/v1/spend")).text


async def test_spend_off_says_how_to_turn_it_on(api: Api) -> None:
    page = await api.admin("/spend")
    assert page.status_code == 200 and 'data-state="off"' in page.text and "DRIFT_LITELLM_URL" in page.text
    assert (await api.admin("/api/v1/spend/pull", method="POST")).status_code == 503
    fleet = await api.admin("/")
    assert 'href="/spend"' in fleet.text
