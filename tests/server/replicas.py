"""Helpers for tests that run several real server processes on one database: a database of its
own (PostgreSQL: `replicas_<hex>`, dropped afterwards), server processes started from this
worktree or from another source tree (an older release), a loopback webhook receiver."""

from __future__ import annotations

import json
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from tests.server.conftest import (
    ADMIN,
    REPO,
    SECRET,
    _pg_reachable,
    free_port,
    make_report,
    rule,
    server_env,
    wait_healthy,
)
from workspace_agent import wire

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
HOOK_SECRET = "hook-secret-Qm3Zr8Tn2Wx6Yp4"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def shared_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'drift.db'}"
        return
    yield from own_pg_database()


@pytest.fixture
def pg_db() -> Iterator[str]:
    yield from own_pg_database()


def own_pg_database() -> Iterator[str]:
    problem = _pg_reachable()
    if problem:
        pytest.skip(problem)
    name = "replicas_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@dataclass
class Replica:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"server did not stop on {sig}: {self.log.read_text()}") from None


@dataclass
class Fleet:
    """Server processes started by one test; all stopped (SIGKILL if need be) at its end."""

    db_url: str
    tmp: Path
    started: list[Replica] = field(default_factory=list)

    def start(
        self, tree: Path = REPO, workers: int = 1, log_level: str = "warning", **env: str
    ) -> Replica:
        port = free_port()
        log = self.tmp / f"replica-{len(self.started)}.log"
        environment = server_env(**env)
        environment["PYTHONPATH"] = os.pathsep.join([str(tree), str(tree / "server")])
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "workspace_agent_server", "--db", self.db_url,
                 "--host", "127.0.0.1", "--port", str(port), "--log-level", log_level,
                 "--workers", str(workers)],
                cwd=tree, env=environment, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: close() ends --workers' children too
            )  # fmt: skip
        replica = Replica(proc, f"http://127.0.0.1:{port}", log)
        self.started.append(replica)
        wait_healthy(proc, replica.url, log, timeout=60)
        return replica

    def close(self) -> None:
        """Every process each server started, its --workers children included (killing only
        the supervisor left them running after the test, connected to a dropped database)."""
        for replica in self.started:
            if replica.proc.poll() is None:
                replica.proc.kill()
                replica.proc.wait()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(replica.proc.pid, signal.SIGKILL)

    def sql(self, query: str, **params: Any) -> list[Any]:
        engine = sa.create_engine(self.db_url)
        try:
            with engine.begin() as conn:
                result = conn.execute(sa.text(query), params)
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()


@pytest.fixture
def fleet_on(tmp_path: Path) -> Iterator[Any]:
    fleets: list[Fleet] = []

    def make(db_url: str) -> Fleet:
        fleets.append(Fleet(db_url, tmp_path))
        return fleets[-1]

    yield make
    for f in fleets:
        f.close()


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers `status` (after `delay_s`), records every POST."""

    url: str = ""
    status: int = 200
    delay_s: float = 0.0
    got: list[tuple[dict[str, str], dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def delivered(self, since: float = 0.0) -> dict[str, list[dict[str, Any]]]:
        """Events of the POSTs answered 2xx (that arrived after `since`, a time.monotonic()),
        by event id (more than one: a repeat)."""
        out: dict[str, list[dict[str, Any]]] = {}
        with self.lock:
            for headers, body in self.got:
                if headers.get("answered") == "ok" and float(headers["arrived"]) > since:
                    for event in body["events"]:
                        out.setdefault(event["id"], []).append(event)
        return out

    def workspaces(self, since: float = 0.0) -> set[str]:
        return {events[0]["workspace"]["id"] for events in self.delivered(since).values()}

    def wait_for(self, ids: set[str], timeout: float, since: float = 0.0) -> None:
        deadline = time.monotonic() + timeout
        while not ids <= self.workspaces(since):
            assert time.monotonic() < deadline, f"delivered {self.workspaces(since)}, want {ids}"
            time.sleep(0.1)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            headers = {k.lower(): v for k, v in self.headers.items()}
            headers["arrived"] = str(time.monotonic())
            time.sleep(rec.delay_s)
            status = rec.status
            headers["answered"] = "ok" if status < 300 else str(status)
            try:
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()
            except OSError:
                headers["answered"] = "gone"  # the sender timed out and closed
            with rec.lock:
                rec.got.append((headers, body))

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    yield rec
    server.shutdown()
    server.server_close()


def hook_env(receiver: Receiver, **extra: str) -> dict[str, str]:
    return {
        "DRIFT_WEBHOOK_URL": receiver.url,
        "DRIFT_WEBHOOK_SECRET": HOOK_SECRET,
        "DRIFT_WEBHOOK_BACKOFF_S": "0.2",
        "DRIFT_WEBHOOK_POLL_S": "0.5",
        "DRIFT_REPLICA_HEARTBEAT_S": "0.5",
        **extra,
    }


def enroll(url: str, workspace_id: str) -> str:
    answer = httpx.post(
        url + wire.ENROLL_PATH,
        headers={"Authorization": f"Bearer {SECRET}"},
        json={"workspace": {"id": workspace_id, "name": workspace_id, "owner": "o"},
              "agent_version": "0.1.0"},
        timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return str(answer.json()["workspace_token"])


def post_report(url: str, token: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        url + wire.REPORTS_PATH, json=body, headers={"Authorization": f"Bearer {token}"}, timeout=15
    )


def drift(url: str, token: str, workspace_id: str, state: str = "drift") -> httpx.Response:
    answer = post_report(url, token, make_report(workspace_id, [rule("x", state)]))
    assert answer.status_code == 200, answer.text
    return answer


def admin_get(url: str, path: str) -> httpx.Response:
    return httpx.get(url + path, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=15)
