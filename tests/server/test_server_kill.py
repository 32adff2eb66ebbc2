"""SIGKILL the server while it ingests reports: no half-written report in the database.

Three clients post reports of 60 rules each as fast as the server takes them (each report flips
every rule, so each ingest rewrites the workspace, all its rule states and adds transitions).
After a random 0.2-1.2 s the server process gets SIGKILL, with requests in flight; then it is
started again on the same database, and:

* every report the server acknowledged is stored (durable), and nothing else but what was sent;
* each workspace's rule states are exactly those of its last stored report (no mix of two);
* no transition names a report that is not stored (no part of a rolled-back ingest);
* the SQLite file passes `PRAGMA integrity_check`;
* sending the in-flight reports again (as the agent's queue does) is accepted and consistent.

WA_INGEST_KILL_TRIALS (default 6) trials per database.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.server.conftest import REPO, SECRET, free_port, make_report, rule, server_env
from workspace_agent import wire

pytestmark = pytest.mark.slow
TRIALS = int(os.environ.get("WA_INGEST_KILL_TRIALS", "6"))
WORKSPACES = ("ws-k1", "ws-k2", "ws-k3")
RULES = 60


@contextmanager
def server(db_url: str, port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workspace_agent_server", "--db", db_url, "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=REPO, env=server_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def report_body(workspace_id: str, seq: int) -> dict[str, Any]:
    rules = [rule(f"r{i:03d}", "drift" if (seq + i) % 2 else "compliant", f"v{seq - 1}", f"v{seq}")
             for i in range(RULES)]
    return make_report(workspace_id, rules, report_id=uuid.uuid4().hex, at=datetime.now(UTC))


@dataclass
class Load:
    """What the clients sent and what the server acknowledged."""

    sent: dict[str, dict[str, Any]] = field(default_factory=dict)  # report id → body
    acked: set[str] = field(default_factory=set)
    in_flight: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (ws, token, body)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


def client(url: str, workspace_id: str, token: str, load: Load, start_seq: int) -> None:
    seq = start_seq
    with httpx.Client(base_url=url, timeout=10) as http:
        while not load.stop.is_set():
            body = report_body(workspace_id, seq)
            with load.lock:
                load.sent[body["report_id"]] = body
            try:
                answer = http.post(wire.REPORTS_PATH, json=body, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError:
                with load.lock:
                    load.in_flight.append((workspace_id, token, body))
                return
            assert answer.status_code == 200, answer.text
            with load.lock:
                load.acked.add(body["report_id"])
            seq += 1


def check_database(db_url: str, load: Load) -> list[str]:
    problems: list[str] = []
    engine = sa.create_engine(db_url)
    try:
        with engine.connect() as conn:
            if db_url.startswith("sqlite"):
                integrity = conn.exec_driver_sql("PRAGMA integrity_check").scalar_one()
                if integrity != "ok":
                    problems.append(f"integrity_check: {integrity}")
            stored = {r for (r,) in conn.exec_driver_sql("SELECT report_id FROM reports")}
            if load.acked - stored:
                problems.append(f"{len(load.acked - stored)} acknowledged report(s) lost")
            if stored - set(load.sent):
                problems.append(f"{len(stored - set(load.sent))} stored report(s) nobody sent")
            orphans = {r for (r,) in conn.exec_driver_sql("SELECT DISTINCT report_id FROM transitions")} - stored
            if orphans:
                problems.append(f"transitions of {len(orphans)} report(s) that are not stored")
            for workspace_id, last, total in conn.exec_driver_sql(
                    "SELECT id, last_report_id, rules_total FROM workspaces"):
                if last is None:
                    continue
                if last not in stored:
                    problems.append(f"{workspace_id}: last report {last} is not stored")
                    continue
                want = {r["rule_id"]: (r["state"], r["before"], r["after"]) for r in load.sent[last]["rules"]}
                have = {row[0]: tuple(row[1:]) for row in conn.execute(sa.text(
                    "SELECT rule_id, state, before, after FROM rule_states WHERE workspace_id = :w"), {"w": workspace_id})}
                if have != want or total != len(want):
                    mixed = sorted({v[2] for v in have.values()})
                    problems.append(f"{workspace_id}: rule states are not those of its last report {last} "
                                    f"({len(have)} rows, values {mixed[:4]})")
    finally:
        engine.dispose()
    return problems


def test_sigkill_during_ingest_leaves_no_half_written_report(db_url: str, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    rng = random.Random(int(os.environ.get("WA_INGEST_KILL_SEED", str(random.randrange(10**6)))))
    load = Load()
    with server(db_url, port, log):
        tokens = {}
        for workspace_id in WORKSPACES:
            answer = httpx.post(url + wire.ENROLL_PATH, headers={"Authorization": f"Bearer {SECRET}"},
                                json={"workspace": {"id": workspace_id, "name": workspace_id, "owner": "o"},
                                      "agent_version": "0"}, timeout=10)
            tokens[workspace_id] = answer.json()["workspace_token"]
    seen_in_flight = 0
    per_trial: list[str] = []
    for trial in range(TRIALS):
        load.stop.clear()
        load.in_flight.clear()
        with server(db_url, port, log) as proc:
            threads = [threading.Thread(target=client, args=(url, ws, tokens[ws], load, 1000 * trial + 1))
                       for ws in WORKSPACES]
            for thread in threads:
                thread.start()
            acked_before = len(load.acked)
            time.sleep(rng.uniform(0.2, 1.2))
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            load.stop.set()
            for thread in threads:
                thread.join(30)
        seen_in_flight += len(load.in_flight)
        per_trial.append(f"{len(load.acked) - acked_before} acked, {len(load.in_flight)} in flight")
        problems = check_database(db_url, load)
        assert problems == [], f"trial {trial}: {problems}"
        with server(db_url, port, log):  # the agent's queue sends the lost ones again
            for workspace_id, token, body in load.in_flight:
                answer = httpx.post(url + wire.REPORTS_PATH, json=body, headers={"Authorization": f"Bearer {token}"},
                                    timeout=10)
                assert answer.status_code == 200, answer.text
                load.acked.add(body["report_id"])
        assert check_database(db_url, load) == []
    print(f"{TRIALS} kills: " + "; ".join(per_trial))
    assert len(load.acked) > 10 * TRIALS, "the server was not under load when killed"
    assert seen_in_flight >= TRIALS, "the kills must hit requests in flight"
