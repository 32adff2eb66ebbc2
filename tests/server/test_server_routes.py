"""The JSON API in-process (httpx ASGI transport), on SQLite and on PostgreSQL: enroll, ingest,
the refusals (and that they change nothing in the database), fleet, detail, revoke, stale."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from tests.server.conftest import ADMIN, SECRET, Api, make_report, rule
from workspace_agent import wire

pytestmark = pytest.mark.anyio


async def test_enroll_stores_only_a_hash_of_the_token(api: Api) -> None:
    token = await api.enroll("ws-1", owner="alice")
    assert token.startswith("wat_") and len(token) > 40
    snap = api.snapshot()
    assert len(snap["workspaces"]) == 1
    assert not any(token in cell for row in snap["workspaces"] for cell in row)
    import hashlib

    assert any(hashlib.sha256(token.encode()).hexdigest() in row for row in snap["workspaces"])


async def test_enroll_refuses_a_wrong_secret_and_bad_body(api: Api) -> None:
    resp = await api.client.post(
        wire.ENROLL_PATH,
        headers={"Authorization": "Bearer nope"},
        json={"workspace": {"id": "x"}, "agent_version": "1"},
    )
    assert resp.status_code == 401 and "enrollment secret" in resp.json()["detail"]
    resp = await api.client.post(
        wire.ENROLL_PATH,
        headers={"Authorization": f"Bearer {SECRET}"},
        json={"workspace": {}, "agent_version": "1"},
    )
    assert resp.status_code == 422
    assert "workspace.id" in resp.json()["detail"]
    assert api.rows()["workspaces"] == 0


async def test_report_is_stored_and_shown(api: Api) -> None:
    token = await api.enroll("ws-1", name="alice-dev")
    body = make_report(
        "ws-1",
        [
            rule("roo.import"),
            rule("vscode.setting.chat.disableAIFeatures", "drift", "false", "true"),
        ],
        name="alice-dev",
        key_level="unrestricted",
    )
    resp = await api.report(token, body)
    assert resp.status_code == 200, resp.text
    assert wire.ReportAccepted.model_validate(resp.json()) == wire.ReportAccepted(
        report_id=body["report_id"], duplicate=False
    )
    assert api.rows() == {"workspaces": 1, "rule_states": 2, "transitions": 2, "reports": 1}

    fleet = (await api.admin(wire.WORKSPACES_PATH)).json()
    assert fleet["counts"]["drifted"] == 1 and fleet["counts"]["total"] == 1
    assert fleet["updated_at"] is not None
    (w,) = fleet["workspaces"]
    assert (w["id"], w["name"], w["status"], w["failing_rules"]) == (
        "ws-1",
        "alice-dev",
        "drifted",
        ["vscode.setting.chat.disableAIFeatures"],
    )
    assert w["level_mismatch"] is True and w["key_enforcement_level"] == "unrestricted"
    assert (w["rules_total"], w["rules_failing"]) == (2, 1)


async def test_duplicate_report_id_changes_nothing(api: Api) -> None:
    token = await api.enroll("ws-1")
    body = make_report("ws-1", [rule("a", "drift", "x", "y")])
    assert (await api.report(token, body)).json()["duplicate"] is False
    before = api.snapshot()
    api.clock.advance(30)
    again = await api.report(token, body)
    assert again.status_code == 200 and again.json() == {
        "report_id": body["report_id"],
        "duplicate": True,
    }
    assert api.snapshot() == before
    metrics = (await api.admin("/metrics")).text
    assert "drift_reports_duplicate_total 1" in metrics
    assert "drift_reports_ingested_total 1" in metrics


async def test_token_of_a_cannot_write_b(api: Api) -> None:
    token_a = await api.enroll("ws-a")
    await api.enroll("ws-b")
    before = api.snapshot()
    resp = await api.report(token_a, make_report("ws-b", [rule("a", "drift")]))
    assert resp.status_code == 403
    assert resp.json()["reason"] == "wrong_workspace"
    assert "another workspace" in resp.json()["detail"]
    assert api.snapshot() == before


async def test_revoked_token_is_refused_and_reenroll_works(api: Api) -> None:
    token = await api.enroll("ws-1")
    assert (await api.report(token, make_report("ws-1", [rule("a")]))).status_code == 200
    resp = await api.admin(f"{wire.WORKSPACES_PATH}/ws-1/revoke", method="POST")
    assert resp.status_code == 200 and resp.json()["revoked"] is True
    before = api.snapshot()
    refused = await api.report(token, make_report("ws-1", [rule("a", "drift")]))
    assert refused.status_code == 401 and refused.json()["reason"] == "revoked"
    assert "revoked" in refused.json()["detail"]
    assert api.snapshot() == before
    detail = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    assert detail["token_revoked_at"] is not None
    fresh = await api.enroll("ws-1")
    assert (await api.report(fresh, make_report("ws-1", [rule("a")]))).status_code == 200
    assert (await api.report(token, make_report("ws-1", [rule("a")]))).status_code == 401
    missing = await api.admin(f"{wire.WORKSPACES_PATH}/nope/revoke", method="POST")
    assert missing.status_code == 404


async def test_oversized_report_is_413_and_changes_nothing(api_factory) -> None:  # type: ignore[no-untyped-def]
    async with api_factory(max_body_bytes=4096) as api:
        token = await api.enroll("ws-1")
        before = api.snapshot()
        big = make_report("ws-1", [rule(f"r{i}", "drift", "x" * 100, "y") for i in range(60)])
        resp = await api.report(token, big)
        assert resp.status_code == 413
        assert "4096 bytes" in resp.json()["detail"]
        assert api.snapshot() == before
        # The same without a Content-Length (streamed in chunks) is cut off as well.
        import json

        async def chunks():  # type: ignore[no-untyped-def]
            data = json.dumps(big).encode()
            for i in range(0, len(data), 1000):
                yield data[i : i + 1000]

        resp = await api.client.post(
            wire.REPORTS_PATH, content=chunks(), headers={"Authorization": f"Bearer {token}"}
        )
        assert resp.status_code == 413
        assert api.snapshot() == before
        assert (
            'drift_reports_rejected_total{reason="too_large"} 2'
            in (await api.admin("/metrics")).text
        )


@pytest.mark.parametrize(
    "body, where",
    [
        (b"{not json", "Invalid JSON"),
        (b'{"report_id": "short"}', "report_id"),
        (None, "rules.0.state"),
        (None, "extra"),
        (None, "appears more than once"),
    ],
)
async def test_malformed_report_is_422_with_a_message(
    api: Api, body: bytes | None, where: str
) -> None:
    import json

    token = await api.enroll("ws-1")
    if body is None:
        good = make_report("ws-1", [rule("a")])
        if where == "extra":
            good["surprise"] = 1
        elif where.startswith("appears"):
            good["rules"].append(dict(good["rules"][0]))
        else:
            good["rules"][0]["state"] = "fine"
        body = json.dumps(good).encode()
    before = api.snapshot()
    resp = await api.report(token, body)
    assert resp.status_code == 422
    assert resp.json()["detail"].startswith("the report is not valid")
    assert where.lower() in json.dumps(resp.json()).lower()
    assert api.snapshot() == before


async def test_wrong_wire_version_is_refused(api: Api) -> None:
    token = await api.enroll("ws-1")
    body = make_report("ws-1", [rule("a")])
    body["wire_version"] = 99
    resp = await api.report(token, body)
    assert resp.status_code == 422 and "wire_version 99" in resp.json()["detail"]
    assert api.rows()["reports"] == 0


async def test_auth_kinds_are_kept_apart(api: Api) -> None:
    token = await api.enroll("ws-1")
    # Admin token cannot post reports; the enrollment secret neither.
    for cred in (ADMIN, SECRET):
        resp = await api.report(cred, make_report("ws-1", [rule("a")]))
        assert resp.status_code == 403, resp.text
    # No / unknown token → 401.
    assert (await api.client.post(wire.REPORTS_PATH, json={})).status_code == 401
    assert (await api.report("wat_bogus", make_report("ws-1", [rule("a")]))).status_code == 401
    # A workspace token (or the secret) on admin routes → 403; nothing → 401.
    for cred in (token, SECRET):
        resp = await api.client.get(
            wire.WORKSPACES_PATH, headers={"Authorization": f"Bearer {cred}"}
        )
        assert resp.status_code == 403 and "admin token" in resp.json()["detail"]
    assert (await api.client.get(wire.WORKSPACES_PATH)).status_code == 401
    assert (await api.client.get(f"{wire.WORKSPACES_PATH}/ws-1")).status_code == 401
    assert (
        await api.client.post(
            f"{wire.WORKSPACES_PATH}/ws-1/revoke", headers={"Authorization": f"Bearer {token}"}
        )
    ).status_code == 403
    assert api.rows()["reports"] == 0
    metrics = (await api.admin("/metrics")).text
    assert 'drift_reports_rejected_total{reason="forbidden"} 2' in metrics
    assert 'drift_reports_rejected_total{reason="unauthorized"} 2' in metrics


async def test_detail_first_failing_and_history(api: Api) -> None:
    token = await api.enroll("ws-1")
    t0 = api.clock.now
    setting = "vscode.setting.chat.disableAIFeatures"
    reports = [
        (t0, [rule("roo.import"), rule(setting)], "check"),
        (
            t0 + timedelta(minutes=5),
            [rule("roo.import"), rule(setting, "drift", "false", "true")],
            "check",
        ),
        (
            t0 + timedelta(minutes=10),
            [rule("roo.import"), rule(setting, "drift", "false", "true")],
            "heartbeat",
        ),
        (
            t0 + timedelta(minutes=15),
            [rule("roo.import"), rule(setting, "corrected", "false", "true")],
            "bootstrap",
        ),
        (t0 + timedelta(minutes=20), [rule("roo.import"), rule(setting)], "heartbeat"),
    ]
    for at, rules, kind in reports:
        api.clock.now = at
        resp = await api.report(token, make_report("ws-1", rules, at=at, kind=kind))
        assert resp.status_code == 200, resp.text
    d = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    assert d["status"] == "compliant"
    by_id = {r["rule_id"]: r for r in d["rules"]}
    s = by_id[setting]
    assert s["state"] == "compliant"
    assert s["failing_since"].startswith((t0 + timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M"))
    assert s["recovered_at"].startswith((t0 + timedelta(minutes=15)).strftime("%Y-%m-%dT%H:%M"))
    assert by_id["roo.import"]["failing_since"] is None
    # History: state changes only (the repeated drift heartbeat adds nothing), newest first.
    moves = [(t["rule_id"], t["from_state"], t["to_state"]) for t in d["transitions"]]
    assert moves == [
        (setting, "corrected", "compliant"),
        (None, "drifted", "compliant"),
        (setting, "drift", "corrected"),
        (None, "compliant", "drifted"),
        (setting, "compliant", "drift"),
        (None, None, "compliant"),
    ]
    drift_move = d["transitions"][4]
    assert (drift_move["before"], drift_move["after"]) == ("false", "true")
    assert len(d["reports"]) == 5
    assert (await api.admin(f"{wire.WORKSPACES_PATH}/nope")).status_code == 404


async def test_rule_gone_from_a_report_is_recorded_as_removed(api: Api) -> None:
    token = await api.enroll("ws-1")
    await api.report(token, make_report("ws-1", [rule("a"), rule("b", "drift")]))
    api.clock.advance(60)
    await api.report(token, make_report("ws-1", [rule("a")], at=api.clock.now))
    d = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    assert [r["rule_id"] for r in d["rules"]] == ["a"]
    assert ("b", "drift", "removed") in [
        (t["rule_id"], t["from_state"], t["to_state"]) for t in d["transitions"]
    ]
    # A report that could not check anything (no rules, exit 1) keeps the rules, shows error.
    api.clock.advance(60)
    await api.report(token, make_report("ws-1", [], at=api.clock.now, exit_code=1))
    d = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    assert d["status"] == "error" and [r["rule_id"] for r in d["rules"]] == ["a"]


async def test_older_report_does_not_roll_state_back(api: Api) -> None:
    token = await api.enroll("ws-1")
    now = api.clock.now
    await api.report(token, make_report("ws-1", [rule("a")], at=now))
    late = make_report("ws-1", [rule("a", "drift")], at=now - timedelta(minutes=10))
    assert (await api.report(token, late)).json()["duplicate"] is False
    d = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    assert d["status"] == "compliant" and d["rules"][0]["state"] == "compliant"
    assert len(d["reports"]) == 2  # stored, so a resend is still a duplicate


async def test_fleet_filters_and_counts(api: Api) -> None:
    specs = [
        ("w1", "alice", "standard", "standard", [rule("a")]),
        ("w2", "bob", "standard", "standard", [rule("a", "drift")]),
        ("w3", "bob", "design-first", "standard", [rule("a", "error", message="boom")]),
        ("w4", "carol", "unrestricted", None, [rule("a", "corrected")]),
        ("w5", "dave", "standard", "standard", [rule("a", "drift")]),
    ]
    for ws, owner, level, key_level, rules in specs:
        token = await api.enroll(ws, owner=owner)
        body = make_report(ws, rules, owner=owner, level=level, key_level=key_level)
        assert (await api.report(token, body)).status_code == 200
    await api.enroll("w6", owner="erin")  # enrolled, never reported
    api.clock.advance(120)
    # w5 keeps reporting; the rest go silent past 3 × 60 s.
    api.clock.advance(100)
    token5 = await api.enroll("w5", owner="dave")
    await api.report(
        token5, make_report("w5", [rule("a", "drift")], owner="dave", at=api.clock.now)
    )

    async def ids(**params: object) -> list[str]:
        resp = await api.admin(wire.WORKSPACES_PATH, **params)
        assert resp.status_code == 200, resp.text
        return sorted(w["id"] for w in resp.json()["workspaces"])

    fleet = (await api.admin(wire.WORKSPACES_PATH)).json()
    assert fleet["counts"] == {
        "drifted": 1,
        "error": 0,
        "stale": 5,
        "unknown": 0,
        "compliant": 0,
        "total": 6,
    }
    assert fleet["workspaces"][0]["id"] == "w5"  # worst first
    assert await ids(drifted="true") == ["w2", "w5"]
    assert await ids(stale="true") == ["w1", "w2", "w3", "w4", "w6"]
    assert await ids(stale="false") == ["w5"]
    assert await ids(drifted="true", stale="false") == ["w5"]
    assert await ids(owner="bob") == ["w2", "w3"]
    assert await ids(level="design-first") == ["w3"]
    assert await ids(mismatch="true") == ["w3"]
    assert await ids(status="stale", owner="bob") == ["w2", "w3"]
    assert await ids(q="W") == ["w1", "w2", "w3", "w4", "w5", "w6"]
    assert await ids(q="car") == ["w4"]
    bad = await api.admin(wire.WORKSPACES_PATH, status="sideways")
    assert bad.status_code == 422 and "status" in bad.json()["detail"]
    assert 'drift_workspaces{state="stale"} 5' in (await api.admin("/metrics")).text
    stale_w2 = next(w for w in fleet["workspaces"] if w["id"] == "w2")
    assert stale_w2["status"] == "stale" and stale_w2["state"] == "drifted"


async def test_health_metrics_openapi(api: Api) -> None:
    assert (await api.client.get("/health")).json() == {"status": "ok", "db": "ok"}
    token = await api.enroll("ws-1")
    await api.report(token, make_report("ws-1", [rule("a", "drift")]))
    metrics = (await api.admin("/metrics")).text
    assert 'drift_workspaces{state="drifted"} 1' in metrics
    assert "drift_ingest_seconds_count 1" in metrics
    assert 'drift_ingest_seconds_bucket{le="+Inf"} 1' in metrics
    spec = api.app.openapi()  # /openapi.json is for admins only, when DRIFT_API_DOCS=admin
    assert wire.REPORTS_PATH in spec["paths"] and wire.ENROLL_PATH in spec["paths"]
    body = spec["paths"][wire.REPORTS_PATH]["post"]["requestBody"]
    assert body["content"]["application/json"]["schema"]["$ref"].endswith("/Report")
    assert "RuleResultWire" in spec["components"]["schemas"]


async def test_concurrent_reports_of_one_workspace(api: Api) -> None:
    import asyncio

    token = await api.enroll("ws-1")
    base = api.clock.now
    bodies = [
        make_report(
            "ws-1", [rule("a", "drift" if i % 2 else "compliant")], at=base + timedelta(seconds=i)
        )
        for i in range(12)
    ]
    results = await asyncio.gather(*(api.report(token, b) for b in bodies))
    assert [r.status_code for r in results] == [200] * 12, [r.text for r in results]
    assert api.rows()["reports"] == 12
    d = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    assert len(d["rules"]) == 1 and d["last_report_id"] in {b["report_id"] for b in bodies}


async def test_without_secrets_enrollment_and_admin_are_off(api_factory) -> None:  # type: ignore[no-untyped-def]
    async with api_factory(enrollment_secret=None, admin_tokens=[]) as api:
        resp = await api.client.post(
            wire.ENROLL_PATH,
            headers={"Authorization": "Bearer x"},
            json={"workspace": {"id": "w"}, "agent_version": "1"},
        )
        assert resp.status_code == 503 and "DRIFT_ENROLLMENT_SECRET" in resp.json()["detail"]
        listing = await api.client.get(wire.WORKSPACES_PATH, headers={"Authorization": "Bearer x"})
        assert listing.status_code == 503 and "DRIFT_ADMIN_TOKENS" in listing.json()["detail"]
        page = await api.client.get("/")
        assert page.status_code == 503 and "DRIFT_ADMIN_TOKENS" in page.text
        assert api.rows()["workspaces"] == 0


async def test_report_from_a_clock_ahead_does_not_freeze_the_state(api: Api) -> None:
    token = await api.enroll("ws-1")
    ahead = make_report("ws-1", [rule("a", "drift")], at=api.clock.now + timedelta(days=1))
    assert (await api.report(token, ahead)).status_code == 200
    api.clock.advance(60)
    fixed = make_report("ws-1", [rule("a")], at=api.clock.now)
    assert (await api.report(token, fixed)).status_code == 200
    d = (await api.admin(f"{wire.WORKSPACES_PATH}/ws-1")).json()
    assert d["status"] == "compliant" and d["rules"][0]["recovered_at"] is not None


async def test_json_answers_are_what_fastapi_would_send(api: Api) -> None:
    """The fleet and detail answers are encoded off the event loop by json_bytes: byte for byte
    what FastAPI's jsonable_encoder + JSONResponse made of them before."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse
    from workspace_agent_server.queries import FleetFilter
    from workspace_agent_server.routes import detail_data, fleet_data, json_bytes

    token = await api.enroll("ws-1", name="Ünïcode dev")
    rules = [rule("a", "drift", "1", "2"), rule("b")]
    await api.report(token, make_report("ws-1", rules, name="Ünïcode dev"))
    ctx = api.app.state.ctx
    for data in (fleet_data(ctx, FleetFilter()), detail_data(ctx, "ws-1")):
        assert json_bytes(data) == JSONResponse(jsonable_encoder(data)).body
    listed = await api.admin(wire.WORKSPACES_PATH)
    assert listed.headers["content-type"] == "application/json"
    assert listed.json()["workspaces"][0]["failing_rules"] == ["a"]
    assert "Ünïcode dev".encode() in listed.content  # UTF-8, not \u escapes, as before


async def test_enrolled_without_a_report_is_unknown_not_stale(api: Api) -> None:
    """A workspace that enrolled a moment ago and has not reported (no last_seen_at): counted
    as unknown, listed as not stale; stale once the stale time has passed since enrollment."""
    await api.enroll("fresh")

    async def view(**params: object) -> dict[str, Any]:
        resp = await api.admin(wire.WORKSPACES_PATH, **params)
        assert resp.status_code == 200, resp.text
        return dict(resp.json())

    fleet = await view()
    assert (fleet["counts"]["unknown"], fleet["counts"]["stale"], fleet["counts"]["total"]) == (
        1,
        0,
        1,
    )
    assert [w["id"] for w in (await view(stale="false"))["workspaces"]] == ["fresh"]
    assert [w["id"] for w in (await view(status="unknown"))["workspaces"]] == ["fresh"]
    assert (await view(stale="true"))["workspaces"] == []
    api.clock.advance(181)  # stale after 3 × 60 s
    fleet = await view()
    assert (fleet["counts"]["unknown"], fleet["counts"]["stale"]) == (0, 1)
    assert [w["id"] for w in (await view(stale="true"))["workspaces"]] == ["fresh"]
    assert (await view(stale="false"))["workspaces"] == []


async def test_nul_is_refused_whether_escaped_or_raw(api: Api) -> None:
    """routes.parse walks the parsed report for NUL only when the body holds the escape
    \\u0000; a raw NUL byte never gets that far (the JSON parser refuses it)."""
    import json

    token = await api.enroll("ws-1")
    good = json.dumps(make_report("ws-1", [rule("a", "drift", "x", "y")]))
    before = api.snapshot()
    escaped = good.replace('"before": "x"', '"before": "a\\u0000b"').encode()
    raw = good.replace('"before": "x"', '"before": "a\x00b"').encode()
    for body in (escaped, raw):
        resp = await api.report(token, body)
        assert resp.status_code == 422 and resp.json()["reason"] == "invalid", resp.text
    assert "NUL" in (await api.report(token, escaped)).json()["detail"]
    assert api.snapshot() == before
    assert (await api.report(token, good.encode())).status_code == 200
