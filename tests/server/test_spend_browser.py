"""The spend page in headless Chromium against a uvicorn server on loopback: signed in through the
form, totals and rows as the API says, the drifted spender marked, no script, and a screenshot for
docs/ (refreshed with WA_UPDATE_SCREENSHOTS=1)."""

from __future__ import annotations

import os
import shutil
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from workspace_agent_server import spend_pull
from workspace_agent_server.db import write_tx

from tests.heavy import require
from tests.server.conftest import ADMIN, SECRET, REPO, Clock, make_report, make_settings, rule
from tests.server.test_server_admin_pages import ThreadServer
from tests.server.test_spend_pull import key, log
from workspace_agent import wire

# Starts a uvicorn server and Chromium.
pytestmark = [pytest.mark.slow, pytest.mark.anyio]

FLEET = [  # workspace, owner, template, budget, daily spend by model group, drifted
    ("alice-payments-api", "alice", "python-dev", 50.0, {"claude-sonnet": 1.10, "claude-haiku": 0.05}, False),
    ("bob-ml-notebooks", "bob", "data-science", 50.0, {"claude-opus": 3.90, "claude-sonnet": 0.60}, True),
    ("carol-frontend", "carol", "frontend", 25.0, {"claude-haiku": 0.22, "claude-sonnet": 0.35}, False),
    ("dave-infra", "dave", "platform", 25.0, {"claude-sonnet": 0.80}, False),
    ("erin-sandbox", "erin", "python-dev", 10.0, {}, False),
    ("frank-data-pipeline", "frank", "data-science", 50.0, {"claude-opus": 1.20, "claude-haiku": 0.10}, False),
]


def seed(url: str, engine: object, clock: Clock) -> float:
    """Workspaces through the real API (one drifted), keys and 14 days of spend as a pull
    stores them; returns the 7-day total."""
    now = clock.now
    keys, total = [], 0.0
    with httpx.Client(base_url=url, timeout=10) as client:
        for i, (ws, owner, template, budget, daily, drifted) in enumerate(FLEET):
            token = client.post(wire.ENROLL_PATH, headers={"Authorization": f"Bearer {SECRET}"}, json={
                "workspace": {"id": f"ws-{i}", "name": ws, "owner": owner}, "agent_version": "0.1.0"}).json()["workspace_token"]
            state = "drift" if drifted else "compliant"
            body = make_report(f"ws-{i}", [rule("vscode.setting.chat.disableAIFeatures", state, "true" if drifted else None,
                                                "absent" if drifted else None)], name=ws, owner=owner, at=now)
            assert client.post(wire.REPORTS_PATH, json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 200
            spent = sum(daily.values()) * 14
            created = now - timedelta(days=40 if not daily else 20)
            keys.append(key(f"{i:02d}" * 8, spend=spent, budget=budget, workspace_id=f"ws-{i}", workspace_name=ws,
                            owner=owner, template_name=template, key_alias=f"workspace-ws-{i}",
                            created_at=created, budget_reset_at=now + timedelta(days=16)))
    with write_tx(engine) as conn:  # type: ignore[arg-type]
        assert spend_pull.take_lease(conn, "seed", 300, 60, force=True) is not None
        spend_pull.renew(conn, "seed", 60)  # a new generation, as every pull's writes make
        spend_pull.store_keys(conn, keys, now)
        conn.execute(spend_pull.spend_pull.update().values(keys_at=now))
        for d in range(14):
            day = (now - timedelta(days=d)).date()
            at = datetime(day.year, day.month, day.day, 11, tzinfo=UTC)
            rows = [log(f"{i}-{d}-{m}", k.token, m, s * (1 + 0.1 * ((d + i) % 3)), at)
                    for i, (k, (*_, daily, _)) in enumerate(zip(keys, FLEET)) for m, s in daily.items()]
            spend_pull.store_day(conn, day, rows)
            total += sum(r.spend for r in rows) if d < 7 else 0.0
        spend_pull.finish(conn, "seed", error=None, keys=len(keys), log_rows=14 * 9, synced_through=now.date())
    return total


@pytest.fixture
def chromium_bin() -> str:
    return require("WA_CHROMIUM", "Debian chromium (headless)")


async def test_spend_page_in_headless_chromium(tmp_path: Path, chromium_bin: str) -> None:
    pytest.importorskip("websockets", reason="the page test drives Chromium with `websockets`")
    from workspace_agent_server.app import create_app

    from tests.server.browser import chromium

    clock = Clock(datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0))
    # Spend on, with a LiteLLM that is not there: its first pull fails at start; the seed below
    # then stores what a good pull would (the page then shows that one).
    settings = make_settings(f"sqlite:///{tmp_path / 'drift.db'}", litellm_url="http://127.0.0.1:9",
                             litellm_master_key="sk-master-Wz4Kp8Lq2Vb6", spend_pull_interval_s=3600)
    app = create_app(settings, clock=clock)
    with ThreadServer(app) as srv:
        headers = {"Authorization": f"Bearer {ADMIN}"}
        deadline = time.monotonic() + 20
        while httpx.get(srv.url + "/api/v1/spend", headers=headers).json()["status"]["state"] != "failing":
            assert time.monotonic() < deadline, "the first pull did not fail"
            time.sleep(0.1)
        week = seed(srv.url, app.state.ctx.engine, clock)
        api = httpx.get(srv.url + "/api/v1/spend?preset=7d", headers={"Authorization": f"Bearer {ADMIN}"}).json()
        assert api["total"]["spend"] == pytest.approx(week) and week > 0
        profile = tmp_path / "chromium-profile"
        profile.mkdir()
        async with chromium(chromium_bin, profile) as page:
            await page.goto(srv.url + "/spend?preset=7d")
            assert await page.js("location.pathname") == "/login"
            await page.submit_and_wait(
                f"document.querySelector('#token').value = {ADMIN!r};"
                "document.querySelector('form[action=\"/login\"]').submit()"
            )
            assert await page.js("location.pathname + location.search") == "/spend?preset=7d"
            rows = await page.js("[...document.querySelectorAll('#groups tbody tr')].map(r => [r.dataset.group, +r.dataset.spend])")
            assert [r[0] for r in rows] == [r["key"] for r in api["rows"]]
            assert [r[1] for r in rows] == pytest.approx([r["spend"] for r in api["rows"]])
            marked = await page.js("[...document.querySelectorAll('#groups tr.drifted-spending')].map(r => r.dataset.group)")
            assert marked == ["ws-1"]
            assert "bob-ml-notebooks" in await page.js("document.querySelector('#drifted-spending').innerText")
            assert await page.js("document.querySelector('#spend-status').dataset.state") == "ok"
            idle = await page.js("[...document.querySelectorAll('#inactive tbody tr')].map(r => r.dataset.key)")
            assert idle == ["workspace-ws-4"]
            assert await page.js("document.querySelectorAll('script').length") == 0
            assert "built-in method" not in await page.js("document.body.innerText")
            assert "6 keys, 126 requests" in await page.js("document.querySelector('#spend-status').innerText")
            shot = tmp_path / "drift-server-spend.png"
            await page.screenshot(shot)
            # Grouped by model tier, through the page's own form.
            await page.submit_and_wait(
                "document.querySelector('select[name=group]').value = 'tier';"
                "document.querySelector('form.filters').submit()"
            )
            tiers = await page.js("[...document.querySelectorAll('#groups tbody tr')].map(r => r.dataset.group)")
            assert tiers == ["opus", "sonnet", "haiku"]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    if os.environ.get("WA_UPDATE_SCREENSHOTS") == "1":
        shutil.copy(shot, REPO / "docs" / shot.name)
