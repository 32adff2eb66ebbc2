"""Corrections from `workspace-agent watch` on the drift server (in-process, SQLite and PostgreSQL):
stored once per id, shown on the workspace's page and in its JSON, refused like reports are."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.server.conftest import ADMIN, SECRET, Api
from workspace_agent import corrections, wire
from workspace_agent.config import AgentConfig

pytestmark = pytest.mark.anyio


def agent_batch(workspace_id: str, *items: corrections.Correction) -> dict[str, Any]:
    """A batch exactly as the agent's sender builds it (standard library, no pydantic)."""
    config = AgentConfig(home=Path("/nonexistent"), workspace_id=workspace_id, workspace_name="alice-dev", owner="alice")
    return corrections.batch([c.as_wire() for c in items], config)


def flip(rule_id: str = "vscode.setting.chat.disableAIFeatures", restored: bool = True) -> corrections.Correction:
    return corrections.new_correction(
        rule_id, "~/.local/share/code-server/User/settings.json", "(unset)", "true" if restored else None,
        restored=restored, latency_ms=87, message=None if restored else "settings.json is not valid JSONC",
    )


async def post(api: Api, token: str, body: dict[str, Any]) -> Any:
    return await api.client.post(wire.CORRECTIONS_PATH, json=body, headers={"Authorization": f"Bearer {token}"})


def test_the_agent_builds_what_the_wire_format_accepts() -> None:
    assert corrections.CORRECTIONS_PATH == wire.CORRECTIONS_PATH
    assert corrections.MAX_BATCH == wire.MAX_CORRECTIONS
    body = agent_batch("ws-1", flip(), flip("roo.auto-import-path", restored=False))
    parsed = wire.CorrectionBatch.model_validate_json(__import__("json").dumps(body), strict=True)
    assert [c.rule_id for c in parsed.corrections] == ["vscode.setting.chat.disableAIFeatures", "roo.auto-import-path"]
    assert parsed.corrections[0].at.tzinfo is not None


def test_long_values_are_clipped_to_the_wire_bounds() -> None:
    long = corrections.new_correction("r.x", "~/f", "x" * 5000, "y", restored=True, latency_ms=1)
    body = agent_batch("ws-1", long)
    parsed = wire.CorrectionBatch.model_validate(body)
    assert len(parsed.corrections[0].before or "") == corrections.MAX_TEXT


async def test_corrections_are_stored_once_and_shown_on_the_page(api: Api) -> None:
    token = await api.enroll("ws-1", name="alice-dev")
    first, second = flip(), flip("roo.auto-import-path", restored=False)
    body = agent_batch("ws-1", first, second)
    resp = await post(api, token, body)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"batch_id": body["batch_id"], "stored": 2}
    again = await post(api, token, agent_batch("ws-1", first))  # a resend after a lost answer
    assert again.status_code == 200 and again.json()["stored"] == 0

    detail = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    shown = detail["corrections"]
    assert shown["total"] == 2
    assert [c["rule_id"] for c in shown["items"]] == ["roo.auto-import-path", "vscode.setting.chat.disableAIFeatures"]
    assert shown["items"][1]["restored"] is True and shown["items"][1]["latency_ms"] == 87
    assert shown["items"][0]["message"] == "settings.json is not valid JSONC"

    page = await api.client.get("/workspaces/ws-1", headers={"Authorization": f"Bearer {ADMIN}"})
    assert page.status_code == 200
    html = page.text
    assert 'id="corrections"' in html and f'data-correction="{first.correction_id}"' in html
    assert "vscode.setting.chat.disableAIFeatures" in html and "not restored" in html
    assert "87 ms after the change" in html


async def test_an_empty_page_says_there_were_no_corrections(api: Api) -> None:
    await api.enroll("ws-2")
    page = await api.client.get("/workspaces/ws-2", headers={"Authorization": f"Bearer {ADMIN}"})
    assert "No corrections" in page.text and 'id="corrections"' not in page.text


async def test_refusals_store_nothing(api: Api) -> None:
    token = await api.enroll("ws-1")
    await api.enroll("ws-2")
    body = agent_batch("ws-2", flip())
    assert (await post(api, token, body)).status_code == 403  # another workspace's id
    assert (await post(api, ADMIN, agent_batch("ws-1", flip()))).status_code == 403
    assert (await post(api, SECRET, agent_batch("ws-1", flip()))).status_code == 403
    assert (await post(api, "wat_unknown", agent_batch("ws-1", flip()))).status_code == 401
    empty = agent_batch("ws-1")
    assert (await post(api, token, empty)).status_code == 422  # no corrections at all
    bad = agent_batch("ws-1", flip())
    bad["corrections"][0]["latency_ms"] = "87"  # strict: no string for a number
    resp = await post(api, token, bad)
    assert resp.status_code == 422 and "latency_ms" in resp.json()["detail"]
    revoked = await api.enroll("ws-3")
    assert (await api.admin(f"{wire.WORKSPACES_PATH}/ws-3/revoke", "POST")).status_code == 200
    assert (await post(api, revoked, agent_batch("ws-3", flip()))).status_code == 401
    detail = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    assert detail["corrections"]["total"] == 0


async def test_a_workspace_keeps_a_bounded_number(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    from workspace_agent_server import corrections as server_corrections

    monkeypatch.setattr(server_corrections, "KEEP_PER_WORKSPACE", 3)
    token = await api.enroll("ws-1")
    sent = [flip(f"vscode.setting.k{n}") for n in range(5)]
    assert (await post(api, token, agent_batch("ws-1", *sent))).json()["stored"] == 5
    shown = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()["corrections"]
    assert shown["total"] == 3
    assert [c["rule_id"] for c in shown["items"]] == ["vscode.setting.k4", "vscode.setting.k3", "vscode.setting.k2"]


async def test_old_corrections_are_pruned_with_the_reports(api: Api) -> None:
    from workspace_agent_server.app import maintenance_round

    token = await api.enroll("ws-1")
    await post(api, token, agent_batch("ws-1", flip()))
    api.clock.advance(400 * 86400)
    await maintenance_round(api.app.state.ctx)
    shown = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()["corrections"]
    assert shown["total"] == 0
