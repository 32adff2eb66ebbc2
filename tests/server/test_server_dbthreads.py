"""Database work runs in worker threads, at most db_threads() at once (one for SQLite)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from tests.server.conftest import Api, make_report, rule

pytestmark = pytest.mark.anyio


def test_db_threads_per_dialect(db_url: str) -> None:
    from workspace_agent_server.app import db_threads
    from workspace_agent_server.db import make_engine

    engine = make_engine(db_url)
    try:
        expected = 1 if db_url.startswith("sqlite") else 20  # PostgreSQL: pool_size 10 + max_overflow 10
        assert db_threads(engine) == expected
    finally:
        engine.dispose()


async def test_concurrent_reports_are_written_by_one_writer_at_a_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    from workspace_agent_server import queries
    from workspace_agent_server.app import db_threads

    tokens = {f"ws-{i}": await api.enroll(f"ws-{i}") for i in range(8)}
    real_ingest = queries.ingest_many  # the group-commit writer stores every report through it
    lock = threading.Lock()
    busy = {"now": 0, "max": 0}

    def observed_ingest(*args: Any, **kwargs: Any) -> Any:
        with lock:
            busy["now"] += 1
            busy["max"] = max(busy["max"], busy["now"])
        try:
            time.sleep(0.005)  # long enough for other threads to overlap if they were allowed
            return real_ingest(*args, **kwargs)
        finally:
            with lock:
                busy["now"] -= 1

    monkeypatch.setattr(queries, "ingest_many", observed_ingest)
    bodies = [(tok, make_report(ws, [rule("key.file")])) for ws, tok in tokens.items() for _ in range(4)]
    answers = await asyncio.gather(*(api.report(tok, body) for tok, body in bodies))
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    # One writer task stores reports in batches: writes never overlap, whatever the dialect
    # (reads elsewhere still use up to db_threads() threads).
    assert busy["max"] == 1
    assert db_threads(api.app.state.ctx.engine) >= 1
