"""The group-commit writer: concurrent reports share a transaction, apply in arrival order, and
are answered only once committed; a failing report fails alone; stopping writes what is queued;
a server killed mid-load has stored every report it acknowledged."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from workspace_agent_server import queries
from workspace_agent_server.auth import token_hash
from workspace_agent_server.db import make_engine, migrate, write_tx
from workspace_agent_server.writer import Writer

from tests.server.conftest import (
    REPO,
    SECRET,
    Api,
    free_port,
    make_report,
    rule,
    server_env,
    wait_healthy,
)
from workspace_agent import wire
from workspace_agent.wire import WorkspaceIdentity

T0 = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(db_url)
    migrate(eng)
    with write_tx(eng) as conn:
        for ws in ("ws-1", "ws-2", "ws-3"):
            queries.enroll(conn, WorkspaceIdentity(id=ws, owner="o"), "0.1.0", token_hash(ws), T0)
    yield eng
    eng.dispose()


def report(ws: str, state: str, at: datetime) -> wire.Report:
    return wire.Report.model_validate(make_report(ws, [rule("a", state)], at=at))


def stored_ids(engine: sa.Engine) -> set[str]:
    """Report ids visible to a new connection: what is committed."""
    with engine.connect() as conn:
        return set(conn.execute(sa.text("SELECT report_id FROM reports")).scalars())


@pytest.mark.anyio
async def test_concurrent_reports_share_a_batch_and_apply_in_arrival_order(
    engine: sa.Engine,
) -> None:
    writer = Writer(engine)
    writer.start()
    try:
        states = ["drift", "compliant", "compliant", "drift", "error", "drift", "compliant"]
        reports = [report("ws-1", s, T0 + timedelta(seconds=i)) for i, s in enumerate(states)]
        # Another workspace's reports interleaved: a batch holds several workspaces.
        others = [report("ws-2", "drift", T0 + timedelta(seconds=i)) for i in range(len(states))]
        now = T0 + timedelta(minutes=1)
        mixed = [r for pair in zip(reports, others, strict=True) for r in pair]
        results = await asyncio.gather(
            *(writer.submit(r.workspace.id, token_hash(r.workspace.id), r, now) for r in mixed)
        )
    finally:
        await writer.stop()
    assert all(not r.duplicate and r.refused is None for r in results)
    assert writer.stats.largest > 1 and writer.stats.batches < len(mixed)  # they did share
    with engine.connect() as conn:
        moves = conn.execute(
            sa.text(
                "SELECT from_state, to_state FROM transitions "
                "WHERE workspace_id = 'ws-1' AND rule_id = 'a' ORDER BY id"
            )
        ).all()
        last = conn.execute(
            sa.text("SELECT last_report_id, state FROM workspaces WHERE id = 'ws-1'")
        ).one()
    # Every change, in the order the reports came in (a batch applies them one after the other).
    assert [tuple(m) for m in moves] == [
        (None, "drift"),
        ("drift", "compliant"),
        ("compliant", "drift"),
        ("drift", "error"),
        ("error", "drift"),
        ("drift", "compliant"),
    ]
    assert tuple(last) == (reports[-1].report_id, "compliant")


@pytest.mark.anyio
async def test_an_answer_means_committed(engine: sa.Engine) -> None:
    writer = Writer(engine)
    writer.start()
    seen_before_answer: list[str] = []
    try:
        reports = [
            report(f"ws-{1 + i % 3}", "drift" if i % 2 else "compliant", T0 + timedelta(seconds=i))
            for i in range(30)
        ]

        async def send(r: wire.Report) -> None:
            await writer.submit(r.workspace.id, token_hash(r.workspace.id), r, T0)
            # Answered: another connection must already see it (it is committed).
            if r.report_id not in await asyncio.to_thread(stored_ids, engine):
                seen_before_answer.append(r.report_id)

        await asyncio.gather(*(send(r) for r in reports))
    finally:
        await writer.stop()
    assert seen_before_answer == []
    assert stored_ids(engine) == {r.report_id for r in reports}


@pytest.mark.anyio
async def test_a_failing_report_fails_alone(engine: sa.Engine) -> None:
    writer = Writer(engine)
    writer.start()
    try:
        good = [report("ws-1", "compliant", T0), report("ws-2", "drift", T0)]
        bad = report("ws-9", "drift", T0)  # never enrolled: ingest raises inside the batch
        outcomes = await asyncio.gather(
            writer.submit("ws-1", None, good[0], T0),
            writer.submit("ws-9", None, bad, T0),
            writer.submit("ws-2", None, good[1], T0),
            return_exceptions=True,
        )
    finally:
        await writer.stop()
    assert isinstance(outcomes[1], LookupError)
    assert [type(o) for o in (outcomes[0], outcomes[2])] == [queries.IngestResult] * 2
    assert writer.stats.retried_alone == 3  # the batch failed, then each went alone
    assert stored_ids(engine) == {good[0].report_id, good[1].report_id}


@pytest.mark.anyio
async def test_stop_writes_what_is_queued_and_then_refuses(engine: sa.Engine) -> None:
    writer = Writer(engine)
    writer.start()
    reports = [report("ws-3", "compliant", T0 + timedelta(seconds=i)) for i in range(10)]
    pending = [
        asyncio.ensure_future(writer.submit("ws-3", token_hash("ws-3"), r, T0)) for r in reports
    ]
    await asyncio.sleep(0)  # queued, not yet written
    await writer.stop()
    assert all(p.done() and not p.exception() for p in pending)
    assert stored_ids(engine) == {r.report_id for r in reports}
    with pytest.raises(RuntimeError, match="not running"):
        await writer.submit("ws-3", None, report("ws-3", "drift", T0), T0)


@pytest.mark.anyio
async def test_a_request_that_gives_up_does_not_stop_the_writer(engine: sa.Engine) -> None:
    writer = Writer(engine)
    writer.start()
    try:
        first = report("ws-1", "drift", T0)
        waiting = asyncio.ensure_future(writer.submit("ws-1", None, first, T0))
        await asyncio.sleep(0)
        waiting.cancel()  # the client hung up; the report is written anyway
        second = report("ws-1", "compliant", T0 + timedelta(seconds=1))
        result = await writer.submit("ws-1", None, second, T0)
    finally:
        await writer.stop()
    assert result.applied
    assert stored_ids(engine) == {first.report_id, second.report_id}


@pytest.mark.anyio
async def test_reports_over_http_are_batched(api: Api) -> None:
    tokens = [await api.enroll(f"ws-{i}") for i in range(8)]
    bodies = [make_report(f"ws-{i % 8}", [rule("a")]) for i in range(64)]
    answers = await asyncio.gather(*(api.report(tokens[i % 8], b) for i, b in enumerate(bodies)))
    assert [a.status_code for a in answers] == [200] * 64
    stats = api.app.state.ctx.writer.stats
    assert stats.reports == 64 and stats.batches < 64
    assert api.rows()["reports"] == 64
    metrics = (await api.admin("/metrics")).text
    assert "drift_ingest_batch_reports_total 64" in metrics
    assert f"drift_ingest_batches_total {stats.batches}" in metrics
    assert "drift_ingest_queue 0" in metrics


@pytest.mark.slow
def test_killed_server_has_stored_every_acknowledged_report(tmp_path: Path) -> None:
    """SIGKILL the server while 16 clients post reports: every report answered 200 before the
    kill is in the database afterwards (the answer is sent only after the commit)."""
    db = tmp_path / "drift.db"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workspace_agent_server", "--db", f"sqlite:///{db}"]
            + ["--port", str(port), "--log-level", "warning"],
            cwd=REPO,
            env=server_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(proc, url, log, timeout=30)
        acked = asyncio.run(_post_until_killed(url, proc))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert len(acked) > 50, "the server was killed before it answered enough reports"
    engine = make_engine(f"sqlite:///{db}")
    try:
        assert acked <= stored_ids(engine)
    finally:
        engine.dispose()


async def _post_until_killed(url: str, proc: subprocess.Popen[bytes]) -> set[str]:
    acked: set[str] = set()
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        tokens: list[tuple[str, str]] = []
        for i in range(16):
            resp = await client.post(
                wire.ENROLL_PATH,
                headers={"Authorization": f"Bearer {SECRET}"},
                json={"workspace": {"id": f"ws-{i}"}, "agent_version": "0.1.0"},
            )
            tokens.append((f"ws-{i}", resp.json()["workspace_token"]))

        async def client_loop(ws: str, token: str) -> None:
            n = 0
            while True:
                n += 1
                body = make_report(ws, [rule("a", "drift" if n % 2 else "compliant")])
                try:
                    resp = await client.post(
                        wire.REPORTS_PATH,
                        json=body,
                        headers={"Authorization": f"Bearer {token}"},
                    )
                except httpx.HTTPError:
                    return  # the server is gone
                if resp.status_code == 200:
                    acked.add(body["report_id"])

        async def killer() -> None:
            while len(acked) < 300:
                await asyncio.sleep(0.01)
            os.kill(proc.pid, signal.SIGKILL)

        await asyncio.wait_for(
            asyncio.gather(killer(), *(client_loop(ws, t) for ws, t in tokens)), timeout=120
        )
    return acked
