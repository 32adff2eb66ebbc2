"""Several real server processes on one database (issue 19): webhook notices survive a graceful
stop and a SIGKILL (another replica sends them), a token revoked on one replica is refused by
another at once, one report id sent to two replicas is stored once, `--workers 2` answers
/metrics with both processes' counters, and a database out of connections answers 503.
"""

from __future__ import annotations

import re
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.server.conftest import ADMIN, make_report, rule
from tests.server.replicas import (
    Fleet,
    Receiver,
    admin_get,
    drift,
    enroll,
    fleet_on,
    hook_env,
    pg_db,
    post_report,
    receiver,
    shared_db,
)
from workspace_agent import wire

pytestmark = pytest.mark.slow
__all__ = ["fleet_on", "pg_db", "receiver", "shared_db"]  # fixtures used by name below
WORKSPACES = {f"ws-{n}" for n in range(5)}
GRACEFUL = (0, -signal.SIGTERM)  # uvicorn shuts down, then re-raises the signal it caught


def waiting_notices(fleet: Fleet) -> list[Any]:
    return fleet.sql("SELECT workspace_id, claimed_by, failed_at FROM webhook_outbox")


def wait_outbox_empty(fleet: Fleet, timeout: float = 5) -> None:
    """Delivered notices are deleted just after the receiver answered."""
    deadline = time.monotonic() + timeout
    while left := waiting_notices(fleet):
        assert time.monotonic() < deadline, left
        time.sleep(0.05)


def test_sigterm_sends_the_notices_of_the_batch_window(
    shared_db: str, fleet_on: Callable[[str], Fleet], receiver: Receiver
) -> None:
    """5 workspaces drift, SIGTERM 0.3 s later, inside a 5 s batch window: all 5 are sent before
    the process exits (it used to drop them without a word)."""
    fleet = fleet_on(shared_db)
    a = fleet.start(**hook_env(receiver, DRIFT_WEBHOOK_BATCH_WINDOW_S="5"))
    for ws in sorted(WORKSPACES):
        drift(a.url, enroll(a.url, ws), ws)
    time.sleep(0.3)
    assert receiver.got == []  # still in the window
    assert a.stop(signal.SIGTERM) in GRACEFUL
    assert receiver.workspaces() == WORKSPACES
    wait_outbox_empty(fleet)


def test_sigterm_with_the_receiver_down_leaves_them_to_the_next_replica(
    shared_db: str, fleet_on: Callable[[str], Fleet], receiver: Receiver
) -> None:
    fleet = fleet_on(shared_db)
    receiver.status = 503
    a = fleet.start(**hook_env(receiver, DRIFT_WEBHOOK_BATCH_WINDOW_S="0"))
    for ws in sorted(WORKSPACES):
        drift(a.url, enroll(a.url, ws), ws)
    deadline = time.monotonic() + 10
    while len(receiver.got) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert a.stop(signal.SIGTERM) in GRACEFUL
    left = waiting_notices(fleet)
    assert sorted(r.workspace_id for r in left) == sorted(WORKSPACES)
    assert all(r.claimed_by is None and r.failed_at is None for r in left)  # handed back
    assert "notice(s) wait in the database" in a.log.read_text()
    receiver.status = 200
    fleet.start(**hook_env(receiver))
    receiver.wait_for(WORKSPACES, timeout=15)
    wait_outbox_empty(fleet)


def test_sigterm_with_a_hanging_receiver_stops_in_bounded_time(
    pg_db: str, fleet_on: Callable[[str], Fleet], receiver: Receiver
) -> None:
    """The receiver never answers: a SIGTERM waits at most about one webhook timeout for the
    sender, then hands the notices back (unclaimed, attempts kept) and the process exits."""
    fleet = fleet_on(pg_db)
    receiver.delay_s = 20
    env = hook_env(receiver, DRIFT_WEBHOOK_TIMEOUT_S="2", DRIFT_WEBHOOK_BATCH_WINDOW_S="0")
    a = fleet.start(**env)
    for ws in ("h-1", "h-2", "h-3"):
        drift(a.url, enroll(a.url, ws), ws)
    deadline = time.monotonic() + 20
    while not any(r.claimed_by for r in waiting_notices(fleet)):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    started = time.monotonic()
    assert a.stop(signal.SIGTERM) in GRACEFUL
    took = time.monotonic() - started
    assert took < 10, f"SIGTERM took {took:.1f} s"
    left = waiting_notices(fleet)
    assert sorted(r.workspace_id for r in left) == ["h-1", "h-2", "h-3"]
    assert all(r.claimed_by is None for r in left)


def test_sigkill_mid_delivery_another_replica_sends_them(
    shared_db: str, fleet_on: Callable[[str], Fleet], receiver: Receiver
) -> None:
    """Replica A claims the notices and is SIGKILLed while its POST hangs; B, started after,
    sends them once A's lease ends. Then C is SIGKILLed inside the batch window of its notices:
    the next replica sends those when the window ends."""
    fleet = fleet_on(shared_db)
    env = hook_env(receiver, DRIFT_WEBHOOK_TIMEOUT_S="2", DRIFT_WEBHOOK_BATCH_WINDOW_S="1")
    a = fleet.start(**env)
    receiver.delay_s = 5
    for ws in sorted(WORKSPACES):
        drift(a.url, enroll(a.url, ws), ws)
    deadline = time.monotonic() + 20
    while not any(r.claimed_by for r in waiting_notices(fleet)):  # a POST of A hangs
        assert time.monotonic() < deadline
        time.sleep(0.02)
    a.stop(signal.SIGKILL)
    killed = time.monotonic()  # only what arrives after the kill counts
    assert {r.workspace_id for r in waiting_notices(fleet)} == WORKSPACES  # leased, not lost
    receiver.delay_s = 0
    b = fleet.start(**env)
    receiver.wait_for(WORKSPACES, timeout=30, since=killed)  # after the lease: 2 × 2 s + 5 s
    wait_outbox_empty(fleet)

    b.stop(signal.SIGKILL)
    c = fleet.start(**hook_env(receiver, DRIFT_WEBHOOK_BATCH_WINDOW_S="8"))
    later = {f"late-{n}" for n in range(3)}
    for ws in sorted(later):
        drift(c.url, enroll(c.url, ws), ws)
    c.stop(signal.SIGKILL)  # inside their 8 s window: nothing sent yet
    assert sorted(r.workspace_id for r in waiting_notices(fleet)) == sorted(later)
    fleet.start(**hook_env(receiver))  # sends them when their window ends
    receiver.wait_for(WORKSPACES | later, timeout=30)
    wait_outbox_empty(fleet)


def test_two_replicas_revoke_duplicates_and_metrics(
    pg_db: str, fleet_on: Callable[[str], Fleet], receiver: Receiver
) -> None:
    fleet = fleet_on(pg_db)
    a = fleet.start(**hook_env(receiver))
    b = fleet.start(**hook_env(receiver))
    token = enroll(a.url, "ws-r")
    # b now holds the token as valid in its memory
    assert post_report(b.url, token, make_report("ws-r", [rule("x")])).status_code == 200
    revoked = httpx.post(
        a.url + "/api/v1/workspaces/ws-r/revoke",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    assert revoked.status_code == 200, revoked.text
    refused = post_report(b.url, token, make_report("ws-r", [rule("x")]))
    assert (refused.status_code, refused.json()["reason"]) == (401, "revoked")

    # The same report to both replicas at once: stored once, the other answer says duplicate.
    token = enroll(b.url, "ws-d")
    answers: list[dict[str, Any]] = []
    for round_ in range(10):
        body = make_report("ws-d", [rule("x", "drift" if round_ % 2 else "compliant")])
        barrier = threading.Barrier(2)

        def send(
            url: str, body: dict[str, Any] = body, barrier: threading.Barrier = barrier
        ) -> None:
            barrier.wait()
            answer = post_report(url, token, body)
            assert answer.status_code == 200, answer.text
            answers.append(answer.json())

        threads = [threading.Thread(target=send, args=(u,)) for u in (a.url, b.url)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert sum(not x["duplicate"] for x in answers) == 10
    assert sum(x["duplicate"] for x in answers) == 10
    assert fleet.sql("SELECT count(*) FROM reports WHERE workspace_id = 'ws-d'")[0][0] == 10
    # 5 drift episodes, one notice each, whichever replica stored the report and sent it.
    deadline = time.monotonic() + 15
    while len([e for e in receiver.delivered().values() if e[0]["workspace"]["id"] == "ws-d"]) < 5:
        assert time.monotonic() < deadline, receiver.delivered()
        time.sleep(0.1)
    time.sleep(1)
    drifted = [e for e in receiver.delivered().values() if e[0]["workspace"]["id"] == "ws-d"]
    assert len(drifted) == 5 and all(len(e) == 1 for e in drifted)

    # Either replica's /metrics has both replicas' counters, and they add up.
    time.sleep(1.2)  # a heartbeat of each
    for url in (a.url, b.url):
        text = admin_get(url, "/metrics").text
        per_replica = all_series(text, "drift_all_reports_ingested_total")
        assert len(per_replica) == 2, text
        assert sum(per_replica.values()) == 11  # ws-r once, ws-d ten times
        assert "drift_webhook_queue 0" in text


def all_series(text: str, name: str) -> dict[str, float]:
    """{replica: value} of one drift_all_* family in a /metrics answer."""
    found = re.findall(rf'^{name}\{{replica="([^"]+)"\}} (\S+)$', text, re.M)
    return {replica: float(value) for replica, value in found}


def test_workers_2_metrics_add_up_whichever_worker_answers(
    pg_db: str, fleet_on: Callable[[str], Fleet]
) -> None:
    fleet = fleet_on(pg_db)
    server = fleet.start(workers=2, DRIFT_REPLICA_HEARTBEAT_S="0.3")
    token = enroll(server.url, "ws-w")
    with httpx.Client(base_url=server.url, timeout=10) as http:
        for _ in range(40):  # new connections: the kernel spreads them over both workers
            body = make_report("ws-w", [rule("x")], report_id=uuid.uuid4().hex)
            answer = post_report(server.url, token, body)
            assert answer.status_code == 200, answer.text
        time.sleep(1.0)
        answered_by: set[frozenset[str]] = set()
        for _ in range(10):
            text = admin_get(server.url, "/metrics").text  # a new connection each
            per_replica = all_series(text, "drift_all_reports_ingested_total")
            assert sum(per_replica.values()) == 40, text
            answered_by.add(frozenset(per_replica))
        assert http.get("/health").status_code == 200
    (replicas,) = answered_by
    assert len(replicas) == 2  # both workers, from either


def test_out_of_database_connections_answers_503_not_500(
    pg_db: str, fleet_on: Callable[[str], Fleet]
) -> None:
    """A role allowed 3 connections stands in for a database whose max_connections are taken
    (the same SQLSTATE 53300; the shared server's own limit is left alone): concurrent admin
    requests and reports get 200 or 503 with Retry-After, never 500."""
    role = "replicas_lim_" + uuid.uuid4().hex[:8]
    fleet = fleet_on(pg_db)
    fleet.sql(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 3")
    dbname = pg_db.rsplit("/", 1)[1]
    fleet.sql(f'GRANT ALL ON DATABASE "{dbname}" TO {role}')
    fleet.sql(f"GRANT ALL ON SCHEMA public TO {role}")
    limited = fleet_on(pg_db.replace("postgres@", f"{role}@"))
    try:
        server = limited.start(DRIFT_DB_POOL_SIZE="1", DRIFT_DB_MAX_OVERFLOW="10")
        tokens = {ws: enroll(server.url, ws) for ws in ("ws-a", "ws-b")}
        statuses: list[tuple[int, str | None]] = []
        lock = threading.Lock()

        admin = {"Authorization": f"Bearer {ADMIN}"}

        def hammer(n: int) -> None:
            with httpx.Client(base_url=server.url, timeout=30) as http:
                for i in range(6):
                    if (n + i) % 2:
                        r = http.get(wire.WORKSPACES_PATH, headers=admin)
                    else:
                        ws = "ws-a" if n % 2 else "ws-b"
                        body = make_report(ws, [rule("x")])
                        bearer = {"Authorization": f"Bearer {tokens[ws]}"}
                        r = http.post(wire.REPORTS_PATH, json=body, headers=bearer)
                    with lock:
                        statuses.append((r.status_code, r.headers.get("retry-after")))

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        codes = sorted({s for s, _ in statuses})
        assert 500 not in codes, statuses
        assert set(codes) <= {200, 503} and 503 in codes and 200 in codes, statuses
        assert all(after == "5" for s, after in statuses if s == 503)
        assert "Traceback" not in server.log.read_text()
        assert server.stop(signal.SIGTERM) in GRACEFUL
    finally:
        limited.close()
        engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
        with engine.begin() as conn:
            conn.exec_driver_sql(f'REVOKE ALL ON DATABASE "{dbname}" FROM {role}')
        engine.dispose()
        fleet.sql(f"DROP OWNED BY {role}")
        fleet.sql(f"DROP ROLE {role}")
