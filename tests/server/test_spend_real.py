"""Spend on the drift server against the REAL database-backed LiteLLM 1.108.7 (`db_proxy`) with
real requests through several keys, on SQLite and on PostgreSQL: the server's totals equal
LiteLLM's own (its endpoints and its database), a budget threshold is notified once, idle keys
are listed, the CSV says what the API says, and the master key shows nowhere."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from workspace_agent_server import spend_pull

from tests.litellm_db_proxy import MASTER_KEY, DbProxy
from tests.server.conftest import Api, make_report, rule
from tests.server.test_server_webhook import HOOK_SECRET, Receiver, receiver, signature_ok

# Every test needs the real LiteLLM proxy (a process, ~25 s to start) and PostgreSQL.
pytestmark = [pytest.mark.anyio, pytest.mark.slow, pytest.mark.litellm, pytest.mark.postgres]
__all__ = ["receiver"]
SPEND = "/api/v1/spend"


@dataclass(frozen=True)
class Fleet:
    """Keys made in the real LiteLLM, and what was sent through them."""

    keys: dict[str, str]  # name -> the key itself (sk-...)
    hashes: dict[str, str]  # name -> LiteLLM's hash (its spend logs' api_key)
    requests: int


def _chat(proxy: DbProxy, key: str, model: str) -> None:
    body = {"model": model, "messages": [{"role": "user", "content": "hello"}]}
    answer = proxy.request("POST", "/v1/chat/completions", key=key, json=body)
    assert answer.status_code == 200, answer.text


def _wait(probe: Callable[[], bool], what: str, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while not probe():
        assert time.monotonic() < deadline, f"{what}: not within {within:g} s"
        time.sleep(0.25)


@pytest.fixture(scope="module")
def fleet(db_proxy: DbProxy) -> Iterator[Fleet]:
    """Five keys: a (drifted workspace, small budget: crosses 80% and 100%), b, c (spent 20 days
    ago), d (made 20 days ago, never used), e (no workspace metadata)."""
    plan = {
        "a": ("w-alpha", "alice", "python-dev", 0.0025, ["claude-sonnet"] * 3 + ["claude-opus"]),
        "b": ("w-bravo", "bob", "python-dev", 1.0, ["claude-haiku"] * 2 + ["claude-sonnet"]),
        "c": ("w-charlie", "carol", "go-dev", 1.0, ["claude-sonnet"] * 2),
        "d": ("w-delta", "dave", "go-dev", 1.0, []),
        "e": (None, None, None, None, ["claude-haiku"]),
    }
    keys: dict[str, str] = {}
    for name, (ws, owner, template, budget, _) in plan.items():
        body: dict[str, Any] = {"key_alias": f"spend-{name}"}
        if ws is not None:
            body |= {
                "user_id": owner,
                "max_budget": budget,
                "budget_duration": "30d",
                "metadata": {
                    "coder_workspace": ws,
                    "workspace_name": f"{ws}-name",
                    "workspace_owner": owner,
                    "template_name": template,
                    "enforcement_level": "standard",
                    "generation": 0,
                },
            }
        made = db_proxy.request("POST", "/key/generate", json=body)
        assert made.status_code == 200, made.text
        keys[name] = made.json()["key"]
    hashes = {
        name: db_proxy.sql(f"SELECT token FROM \"LiteLLM_VerificationToken\" WHERE key_alias = 'spend-{name}'")[0][0]
        for name in plan
    }
    sent = 0
    for name, (*_, models) in plan.items():
        for model in models:
            _chat(db_proxy, keys[name], model)
            sent += 1
    in_list = ",".join(f"'{h}'" for h in hashes.values())
    _wait(
        lambda: int(db_proxy.sql(f'SELECT count(*) FROM "LiteLLM_SpendLogs" WHERE api_key IN ({in_list})')[0][0]) == sent,
        "every request in LiteLLM's spend logs",
    )
    _wait(
        lambda: float(db_proxy.request("GET", "/key/info", params={"key": keys["a"]}).json()["info"]["spend"]) > 0.0025,
        "key a's spend over its budget",
    )
    # History: c's requests were 20 days ago; d was made 20 days ago.
    db_proxy.sql(
        'UPDATE "LiteLLM_SpendLogs" SET "startTime" = "startTime" - interval \'20 days\', '
        f"\"endTime\" = \"endTime\" - interval '20 days' WHERE api_key = '{hashes['c']}' RETURNING 1"
    )
    for name in ("c", "d"):
        db_proxy.sql(
            "UPDATE \"LiteLLM_VerificationToken\" SET created_at = created_at - interval '20 days' "
            f"WHERE token = '{hashes[name]}' RETURNING 1"
        )
    yield Fleet(keys, hashes, sent)


def litellm_sums(proxy: DbProxy, fleet: Fleet, first: str, last: str, by: str) -> dict[str, float]:
    """LiteLLM's own database: spend of the fleet's keys over [first, last] (UTC days) by
    `by` (a column of its spend logs)."""
    in_list = ",".join(f"'{h}'" for h in fleet.hashes.values())
    rows = proxy.sql(
        f'SELECT {by}, sum(spend) FROM "LiteLLM_SpendLogs" WHERE api_key IN ({in_list}) '
        f"AND \"startTime\" >= '{first}' AND \"startTime\" < date '{last}' + 1 GROUP BY {by}"
    )
    return {k: float(v) for k, v in rows}


def settings_for(proxy: DbProxy, **extra: Any) -> dict[str, Any]:
    return {
        "litellm_url": proxy.url,
        "litellm_master_key": MASTER_KEY,
        "spend_pull_interval_s": 3600,
        **extra,
    }


async def pull(api: Api) -> spend_pull.PullResult:
    """A pull now (waiting for one the background loop may have begun at start)."""
    ctx = api.app.state.ctx
    deadline = time.monotonic() + 120
    while True:
        done = await spend_pull.pull_once(ctx, force=True)
        if done is not None:
            assert done.error is None, done.error
            return done
        assert time.monotonic() < deadline, "no pull could take the lease"
        await asyncio.sleep(0.2)


def only(rows: list[dict[str, Any]], fleet: Fleet, key: str = "key") -> dict[str, float]:
    return {r[key]: r["spend"] for r in rows}


async def test_totals_equal_litellms_own_and_a_second_pull_counts_nothing_twice(
    api_factory: Any, db_proxy: DbProxy, fleet: Fleet, db_url: str
) -> None:
    async with api_factory(**settings_for(db_proxy)) as api:
        first = await pull(api)
        assert first.keys >= 5 and first.days == 31
        today = datetime.now(UTC).date()
        start = (today - timedelta(days=29)).isoformat()
        for _ in range(2):  # the second pull re-reads today and yesterday: no double counting
            by_model = (await api.admin(SPEND, preset="30d", group="model")).json()
            theirs = litellm_sums(db_proxy, fleet, start, today.isoformat(), "model_group")
            ours = {r["key"]: r["spend"] for r in by_model["rows"]}
            # The proxy is shared with other tests' keys: compare the fleet's model groups.
            assert set(theirs) <= set(ours)
            mine = (await api.admin(SPEND, preset="30d", group="workspace")).json()
            spend = only(mine["rows"], fleet)
            by_key = litellm_sums(db_proxy, fleet, start, today.isoformat(), "api_key")
            assert spend["w-alpha"] == pytest.approx(by_key[fleet.hashes["a"]], abs=1e-12)
            assert spend["w-bravo"] == pytest.approx(by_key[fleet.hashes["b"]], abs=1e-12)
            assert spend["w-charlie"] == pytest.approx(by_key[fleet.hashes["c"]], abs=1e-12)
            assert "w-delta" not in spend
            await pull(api)
        # The whole proxy, every key: the server's total for today equals LiteLLM's own
        # /global/spend/logs figure for today, and its 30 days the sum of LiteLLM's days.
        daily = db_proxy.request("GET", "/global/spend/logs").json()
        litellm_days = {d["date"]: float(d["spend"]) for d in daily}
        today_total = (await api.admin(SPEND, preset="today")).json()["total"]["spend"]
        assert today_total == pytest.approx(litellm_days.get(today.isoformat(), 0.0), abs=1e-9)
        month = (await api.admin(SPEND, preset="30d", group="tier")).json()
        in_range = sum(v for d, v in litellm_days.items() if start <= d <= today.isoformat())
        assert month["total"]["spend"] == pytest.approx(in_range, abs=1e-9)
        tiers = only(month["rows"], fleet)
        assert set(tiers) <= {"haiku", "sonnet", "opus", "other"} and tiers["opus"] > 0
        # Rows are per (key, day, model group): written over, never added to.
        engine = sa.create_engine(db_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text(
                    "SELECT day, model_group, spend, requests FROM spend_daily WHERE token = :t"
                ), {"t": fleet.hashes["a"]}).all()
        finally:
            engine.dispose()
        assert sorted((r.model_group, r.requests) for r in rows) == [("claude-opus", 1), ("claude-sonnet", 3)]


async def test_budget_threshold_is_notified_once_per_window(
    api_factory: Any, db_proxy: DbProxy, fleet: Fleet, receiver: Receiver
) -> None:
    hook = {"webhook_url": receiver.url, "webhook_secret": HOOK_SECRET, "webhook_batch_window_s": 0.2}
    async with api_factory(**settings_for(db_proxy, **hook)) as api:
        await pull(api)
        await receiver.wait_for(1)
        await pull(api)
        await pull(api)
        await asyncio.sleep(1.0)  # a second notice would have been sent by now
    events = [e for headers, body in receiver.got if signature_ok(headers, body)
              for e in json.loads(body)["events"]]
    assert len(events) == sum(len(json.loads(b)["events"]) for _, b in receiver.got)  # all signed
    mine = [e for e in events if e["type"] == "budget_threshold" and e["workspace"]["id"] == "w-alpha"]
    assert sorted(e["budget"]["threshold_percent"] for e in mine) == [80, 100]
    info = db_proxy.request("GET", "/key/info", params={"key": fleet.keys["a"]}).json()["info"]
    event = mine[0]
    assert event["budget"]["max_budget"] == 0.0025 and event["budget"]["spend"] == pytest.approx(info["spend"])
    assert event["budget"]["budget_reset_at"] and event["key"]["alias"] == "spend-a"
    assert event["workspace"] | {"state": None} == {"id": "w-alpha", "name": "w-alpha-name", "owner": "alice",
                                                    "template": "python-dev", "state": None}
    assert not [e for e in events if e.get("workspace", {}).get("id") in ("w-bravo", "w-charlie")]
    assert MASTER_KEY not in str(receiver.got) and fleet.keys["a"] not in str(receiver.got)


async def test_idle_keys_budgets_drifted_spender_and_csv(
    api_factory: Any, db_proxy: DbProxy, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with api_factory(**settings_for(db_proxy)) as api:
        token = await api.enroll("w-alpha", name="w-alpha-name", owner="alice")
        drift = make_report("w-alpha", [rule("vscode.setting.chat.disableAIFeatures", "drift", "true", "absent")])
        assert (await api.report(token, drift)).status_code == 200
        await pull(api)
        idle = (await api.admin(SPEND + "/inactive", days=14)).json()
        names = {k["key_alias"] for k in idle["keys"]}
        assert {"spend-c", "spend-d"} <= names and not names & {"spend-a", "spend-b", "spend-e"}
        c = next(k for k in idle["keys"] if k["key_alias"] == "spend-c")
        assert c["idle_days"] >= 19 and c["last_spend_at"] is not None
        budgets = (await api.admin(SPEND + "/budgets")).json()["keys"]
        a = next(k for k in budgets if k["key_alias"] == "spend-a")
        info = db_proxy.request("GET", "/key/info", params={"key": fleet.keys["a"]}).json()["info"]
        assert a["spend"] == pytest.approx(info["spend"]) and a["percent"] >= 100
        assert a["budget_reset_at"].startswith(info["budget_reset_at"][:16])
        assert a["drifted"] is True and budgets.index(a) == 0  # most used first
        view = (await api.admin(SPEND, preset="30d")).json()
        assert [r["key"] for r in view["drifted_spending"]] == ["w-alpha"]
        page = await api.admin("/spend", preset="30d")
        assert page.status_code == 200 and 'data-group="w-alpha" data-spend' in page.text
        assert 'class="drifted-spending"' in page.text
        # The CSV is the API's rows, all of them.
        exported = await api.admin(SPEND + "/export.csv", view="groups", preset="30d")
        assert exported.headers["content-type"].startswith("text/csv")
        table = list(csv.DictReader(io.StringIO(exported.text)))
        assert {r["key"]: float(r["spend"]) for r in table} == pytest.approx(only(view["rows"], fleet))
        idle_csv = list(csv.DictReader(io.StringIO((await api.admin(SPEND + "/export.csv", view="inactive", days=14)).text)))
        assert {r["key_alias"] for r in idle_csv} == names
        # Every log line (the server's, and httpx's of its requests at DEBUG) lacks the master
        # key; the test's own /key/info requests put key a in their URL, so only the master key.
        assert MASTER_KEY not in caplog.text
        for shown in (page.text, json.dumps(view), exported.text, json.dumps(budgets)):
            assert MASTER_KEY not in shown and fleet.keys["a"] not in shown


async def test_litellm_down_or_a_wrong_master_key_is_a_status_not_a_crash(
    api_factory: Any, db_proxy: DbProxy, fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    cases = [
        ({"litellm_url": f"http://127.0.0.1:{closed}", "litellm_master_key": MASTER_KEY}, "cannot be reached"),
        ({"litellm_url": db_proxy.url, "litellm_master_key": "sk-wrong-master-key-0000"}, "refused the master key"),
    ]
    for settings, problem in cases:
        async with api_factory(spend_pull_interval_s=3600, **settings) as api:
            result = await spend_pull.pull_once(api.app.state.ctx, force=True)
            while result is None:  # the loop's own first pull holds the lease
                await asyncio.sleep(0.2)
                result = await spend_pull.pull_once(api.app.state.ctx, force=True)
            assert result.error is not None and problem in result.error
            status = (await api.admin(SPEND)).json()["status"]
            assert status["state"] == "failing" and problem in status["text"]
            page = await api.admin("/spend")
            assert page.status_code == 200 and 'data-state="failing"' in page.text and problem in page.text
            assert (await api.client.get("/health")).status_code == 200
            for shown in (page.text, json.dumps(status), caplog.text):
                assert MASTER_KEY not in shown and "sk-wrong-master-key-0000" not in shown


async def test_two_replicas_pulling_at_once_count_each_request_once(
    api_factory: Any, db_proxy: DbProxy, fleet: Fleet, db_url: str
) -> None:
    from workspace_agent_server.app import create_app

    from tests.server.conftest import make_settings

    async with api_factory(**settings_for(db_proxy)) as api:
        other = create_app(make_settings(db_url, **settings_for(db_proxy)))
        async with other.router.lifespan_context(other):
            ctxs = [api.app.state.ctx, other.state.ctx]
            # Both try at once, several times: the lease lets one in at a time.
            # (The loops' own first pulls run too; a refused try answers None.)
            results = await asyncio.gather(*[spend_pull.pull_once(c, force=True) for c in ctxs * 3])
            assert all(r is None or r.error is None for r in results)
            await pull(api)
        mine = (await api.admin(SPEND, preset="30d", group="workspace")).json()
        today = datetime.now(UTC).date()
        theirs = litellm_sums(db_proxy, fleet, (today - timedelta(days=29)).isoformat(), today.isoformat(), "api_key")
        assert only(mine["rows"], fleet)["w-alpha"] == pytest.approx(theirs[fleet.hashes["a"]], abs=1e-12)
        assert only(mine["rows"], fleet)["w-bravo"] == pytest.approx(theirs[fleet.hashes["b"]], abs=1e-12)
