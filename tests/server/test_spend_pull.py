"""The spend pull's writes on SQLite and PostgreSQL: key facts upserted, a day written over (never
added to), the lease (one puller at a time, once per period), budget notices once per key, window
and threshold (again after a reset), and a LiteLLM that cannot be reached or answers too much
(a loopback HTTP server) recorded as a sentence."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import SecretStr
from workspace_agent_server import spend_pull
from workspace_agent_server.db import make_engine, migrate, spend_daily, spend_keys, webhook_outbox, write_tx
from workspace_agent_server.spend_litellm import KeyRow, LiteLLM, LogRow

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def key(token: str = "t1", spend: float = 0.0, budget: float | None = 10.0, reset: datetime | None = None, **kw: Any) -> KeyRow:
    values: dict[str, Any] = dict(
        token=token, key_alias=f"alias-{token}", key_name="sk-...abcd", workspace_id=f"ws-{token}",
        workspace_name=f"name-{token}", owner="alice", template_name="python", level="standard",
        generation=0, spend=spend, max_budget=budget, budget_duration="30d",
        budget_reset_at=reset or NOW + timedelta(days=20), created_at=NOW - timedelta(days=3),
        expires_at=None, last_active=None, blocked=False,
    )
    values.update(kw)
    return KeyRow(**values)


def log(request_id: str, token: str, group: str, spend: float, at: datetime) -> LogRow:
    return LogRow(request_id, token, group, spend, at, 10, 20)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    yield eng
    eng.dispose()


def test_a_day_is_written_over_not_added_to(engine: sa.Engine) -> None:
    day = date(2026, 12, 5)
    at = datetime(2026, 12, 5, 9, tzinfo=UTC)
    rows = [log("r1", "t1", "claude-sonnet", 0.25, at), log("r2", "t1", "claude-sonnet", 0.5, at + timedelta(hours=1)),
            log("r3", "t2", "claude-haiku", 0.125, at)]
    with write_tx(engine) as conn:
        spend_pull.store_keys(conn, [key("t1"), key("t2")], NOW)
    for _ in range(3):  # the same day pulled again (the next period, another replica)
        with write_tx(engine) as conn:
            assert spend_pull.store_day(conn, day, rows) == 2
    with engine.connect() as conn:
        got = conn.execute(sa.select(spend_daily.c.token, spend_daily.c.model_group, spend_daily.c.spend,
                                     spend_daily.c.requests).order_by(spend_daily.c.token)).all()
        last = conn.execute(sa.select(spend_keys.c.last_spend_at).where(spend_keys.c.token == "t1")).scalar_one()
    assert [tuple(r) for r in got] == [("t1", "claude-sonnet", 0.75, 2), ("t2", "claude-haiku", 0.125, 1)]
    assert last == at + timedelta(hours=1)
    with write_tx(engine) as conn:  # a later pull of the day that finds fewer rows
        spend_pull.store_day(conn, day, rows[:1])
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.sum(spend_daily.c.spend))).scalar_one() == 0.25


def test_key_facts_are_upserted_by_litellms_hash(engine: sa.Engine) -> None:
    with write_tx(engine) as conn:
        spend_pull.store_keys(conn, [key("t1", spend=1.0)], NOW)
    with write_tx(engine) as conn:
        spend_pull.store_keys(conn, [key("t1", spend=2.5, level="design-first")], NOW + timedelta(minutes=5))
    with engine.connect() as conn:
        rows = conn.execute(sa.select(spend_keys.c.spend, spend_keys.c.level, spend_keys.c.seen_at)).all()
    assert [tuple(r) for r in rows] == [(2.5, "design-first", NOW + timedelta(minutes=5))]


def test_the_lease_lets_one_replica_pull_once_per_period(engine: sa.Engine) -> None:
    def take(me: str, force: bool = False) -> bool:
        with write_tx(engine) as conn:
            return spend_pull.take_lease(conn, me, 300, 60, force) is not None

    assert take("replica-a")
    assert not take("replica-b") and not take("replica-b", force=True)  # a holds it
    assert not take("replica-a", force=True)  # a's loop and its "pull now" take turns too
    with write_tx(engine) as conn:
        spend_pull.finish(conn, "replica-a", error=None, keys=1, log_rows=1, synced_through=NOW.date())
    assert not take("replica-b")  # a pull started less than a period ago
    assert take("replica-b", force=True)  # an admin's "pull now" waits for no period
    with write_tx(engine) as conn:
        spend_pull.renew(conn, "replica-b", 60)
        with pytest.raises(spend_pull.LeaseLost):
            spend_pull.renew(conn, "replica-a", 60)


def test_budget_notice_once_per_key_window_and_threshold(engine: sa.Engine) -> None:
    def alerts(*keys: KeyRow) -> int:
        with write_tx(engine) as conn:
            return spend_pull.budget_alerts(conn, keys, [80, 100], 0)

    assert alerts(key("t1", spend=5.0)) == 0
    assert alerts(key("t1", spend=8.5)) == 1  # 80%
    assert alerts(key("t1", spend=8.9), key("t2", spend=1.0)) == 0  # again: nothing new
    assert alerts(key("t1", spend=10.2)) == 1  # 100%
    assert alerts(key("t1", spend=11.0)) == 0
    # LiteLLM reset the budget: a new window (its reset time moved on), notices again.
    later = NOW + timedelta(days=50)
    assert alerts(key("t1", spend=9.0, reset=later)) == 1
    assert alerts(key("t3", spend=3.0, budget=None), key("t4", spend=3.0, budget=0.0)) == 0
    with engine.connect() as conn:
        events = [json.loads(p) for p in conn.execute(sa.select(webhook_outbox.c.payload).order_by(webhook_outbox.c.id)).scalars()]
    assert [(e["type"], e["budget"]["threshold_percent"]) for e in events] == [
        ("budget_threshold", 80), ("budget_threshold", 100), ("budget_threshold", 80)]
    assert events[0]["workspace"]["id"] == "ws-t1" and events[0]["budget"]["percent"] == 85.0
    assert "token" not in json.dumps(events[0]["key"])


class _Stub(BaseHTTPRequestHandler):
    """A loopback HTTP server standing in for a broken LiteLLM (what it answers is set per test)."""

    answer: tuple[int, bytes] = (200, b"{}")

    def do_GET(self) -> None:
        status, body = self.answer
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[tuple[str, type[_Stub]]]:
    handler = type("Handler", (_Stub,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler
    server.shutdown()
    server.server_close()


MASTER = "sk-master-Zq8mV3pL0rT6yW1xN4bK"


@pytest.mark.anyio
async def test_litellm_answers_are_bounded_and_explained(stub: tuple[str, type[_Stub]]) -> None:
    url, handler = stub
    source = LiteLLM(url, SecretStr(MASTER), 5, 64 * 1024, 3)
    cases = [
        ((200, b"x" * (65 * 1024)), "more than 65,536 bytes"),
        ((500, json.dumps({"error": {"message": f"db down {MASTER}"}}).encode()), "answered 500: db down sk-…"),
        ((401, b"{}"), "refused the master key (401)"),
        ((200, b"not json"), "not JSON"),
        ((200, b'{"keys": [], "total_pages": 1}'), None),
    ]
    for answer, problem in cases:
        handler.answer = answer
        async with source.client() as client:
            if problem is None:
                assert await source.keys(client) == []
                continue
            with pytest.raises(Exception) as caught:
                await source.keys(client)
        assert problem in str(caught.value) and MASTER not in str(caught.value)
    # More pages than allowed: a sentence, not an endless loop.
    handler.answer = (200, b'{"keys": [{"token": "abc"}], "total_pages": 99}')
    async with source.client() as client:
        with pytest.raises(Exception, match="more than 300 keys"):
            await source.keys(client)
