"""Spend views on SQLite and PostgreSQL from stored pulls: periods, the five groupings adding up
to the same total, tiers from the settings, drifted spenders, budgets, idle keys, the cache
following the pull's generation, and the freshness status."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from workspace_agent_server import spend_pull, spend_queries
from workspace_agent_server.db import make_engine, migrate, workspaces, write_tx
from workspace_agent_server.settings import parse_tiers
from workspace_agent_server.spend_queries import Cache, Period, PeriodError, parse_period

from tests.server.test_spend_pull import NOW, key, log

TIERS = parse_tiers("haiku=haiku,sonnet=sonnet,opus=opus")
TODAY = NOW.date()


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


def seed(engine: sa.Engine) -> None:
    """t1 (ws-t1, alice, python; drifted): sonnet today and opus 10 days ago; t2 (ws-t2, bob,
    go): haiku today; t3: never spent, made 30 days ago; x: a key LiteLLM no longer lists."""
    with write_tx(engine) as conn:
        assert spend_pull.take_lease(conn, "r", 300, 60) is not None
        spend_pull.store_keys(conn, [
            key("t1", spend=9.0), key("t2", spend=1.0, owner="bob", template_name="go"),
            key("t3", created_at=NOW - timedelta(days=30)),
        ], NOW)
        conn.execute(sa.update(spend_pull.spend_pull).values(keys_at=NOW))
        at = datetime.combine(TODAY, datetime.min.time(), UTC)
        spend_pull.store_day(conn, TODAY, [log("1", "t1", "claude-sonnet", 1.5, at), log("2", "t2", "claude-haiku", 0.25, at),
                                           log("3", "x", "claude-haiku", 0.125, at)])
        spend_pull.store_day(conn, TODAY - timedelta(days=10), [log("4", "t1", "claude-opus-4", 4.0, at - timedelta(days=10))])
        conn.execute(workspaces.insert().values(id="ws-t1", name="n", owner="alice", agent_version="0", enrolled_at=NOW,
                                                state="drifted", rules_total=1, rules_failing=1, rules_corrected=0,
                                                notes="[]", stale_notified=False))
        spend_pull.finish(conn, "r", error=None, keys=3, log_rows=4, synced_through=TODAY)


def test_periods() -> None:
    today = date(2026, 12, 6)
    assert parse_period(None, None, None, today) == Period(date(2026, 11, 7), today, "30d")
    assert parse_period("today", None, None, today).days == 1
    assert parse_period("last-month", None, None, today) == Period(date(2026, 11, 1), date(2026, 11, 30), "last-month")
    assert parse_period("this-month", None, None, today).start == date(2026, 12, 1)
    assert parse_period("7d", "2026-01-01", "2026-01-31", today) == Period(date(2026, 1, 1), date(2026, 1, 31), None)
    for bad in [("x", None, None), (None, "2026-13-01", None), (None, "2026-02-01", "2026-01-01"), (None, "2020-01-01", "2026-01-01")]:
        with pytest.raises(PeriodError):
            parse_period(*bad, today)


def test_every_grouping_adds_up_to_the_same_total(engine: sa.Engine) -> None:
    seed(engine)
    cache = Cache()
    month = parse_period("30d", None, None, TODAY)
    with engine.connect() as conn:
        views = {g: spend_queries.view(conn, cache, month, g, TIERS, 100) for g in spend_queries.GROUPS}
    for found in views.values():
        assert found["total"]["spend"] == pytest.approx(5.875) and found["total"]["requests"] == 4
        assert sum(r["spend"] for r in found["rows"]) == pytest.approx(5.875)
    by = {g: {r["key"]: r["spend"] for r in v["rows"]} for g, v in views.items()}
    assert by["workspace"] == {"ws-t1": 5.5, "ws-t2": 0.25, "(no workspace)": 0.125}
    assert by["owner"] == {"alice": 5.5, "bob": 0.25, "(no workspace)": 0.125}
    assert by["template"] == {"python": 5.5, "go": 0.25, "(no workspace)": 0.125}
    assert by["tier"] == {"opus": 4.0, "sonnet": 1.5, "haiku": 0.375}
    assert [r["key"] for r in views["workspace"]["rows"]] == ["ws-t1", "ws-t2", "(no workspace)"]
    first = views["workspace"]["rows"][0]
    assert first["drifted"] is True and first["share"] == pytest.approx(93.6) and first["owner"] == "alice"
    assert [r["key"] for r in views["workspace"]["drifted_spending"]] == ["ws-t1"]
    assert [r["key"] for r in views["workspace"]["top"]] == ["ws-t1", "ws-t2"]
    assert views["owner"]["rows"][0]["drifted_workspaces"] == 1
    with engine.connect() as conn:
        today = spend_queries.view(conn, cache, parse_period("today", None, None, TODAY), "tier", TIERS, 100)
    assert {r["key"]: r["spend"] for r in today["rows"]} == {"sonnet": 1.5, "haiku": 0.375}


def test_cache_follows_the_pulls_generation(engine: sa.Engine) -> None:
    seed(engine)
    cache = Cache()
    period = parse_period("today", None, None, TODAY)
    with engine.connect() as conn:
        before = spend_queries.view(conn, cache, period, "workspace", TIERS, 100)["total"]["spend"]
    with write_tx(engine) as conn:
        assert spend_pull.take_lease(conn, "r", 0, 60, force=True) is not None
        spend_pull.renew(conn, "r", 60)  # every pull transaction moves the generation on
        spend_pull.store_day(conn, TODAY, [log("9", "t2", "claude-haiku", 2.0, NOW)])
    with engine.connect() as conn:
        after = spend_queries.view(conn, cache, period, "workspace", TIERS, 100)["total"]["spend"]
    assert (before, after) == (pytest.approx(1.875), pytest.approx(2.0))


def test_budgets_and_idle_keys(engine: sa.Engine) -> None:
    seed(engine)
    with engine.connect() as conn:
        budgets = spend_queries.budgets(conn, NOW, 10)
        idle = spend_queries.inactive(conn, NOW, 14, 10)
        soon = spend_queries.inactive(conn, NOW + timedelta(days=20), 14, 10)
    assert [(k["key_alias"], k["percent"]) for k in budgets["keys"]] == [("alias-t1", 90.0), ("alias-t2", 10.0), ("alias-t3", 0.0)]
    assert budgets["keys"][0]["drifted"] is True and budgets["keys"][0]["budget_reset_at"] == NOW + timedelta(days=20)
    assert [(k["key_alias"], k["idle_days"]) for k in idle["keys"]] == [("alias-t3", 30)]
    assert [k["key_alias"] for k in soon["keys"]] == ["alias-t3", "alias-t1", "alias-t2"]


def test_status_says_how_fresh_the_figures_are(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        assert spend_queries.status(conn, False, 300, NOW)["state"] == "off"
        assert spend_queries.status(conn, True, 300, NOW)["state"] == "waiting"
    seed(engine)
    with engine.connect() as conn:
        ok_at = spend_queries.pull_state(conn)["ok_at"]
        assert spend_queries.status(conn, True, 300, ok_at)["state"] == "ok"
        assert spend_queries.status(conn, True, 300, ok_at + timedelta(hours=1))["state"] == "failing"
    with write_tx(engine) as conn:
        assert spend_pull.take_lease(conn, "r", 0, 60, force=True) is not None
        spend_pull.finish(conn, "r", error="LiteLLM at http://x (/key/list) cannot be reached: ConnectError")
    with engine.connect() as conn:
        st = spend_queries.status(conn, True, 300, ok_at)
    assert st["state"] == "failing" and "cannot be reached" in st["text"] and "last good pull" in st["text"]
