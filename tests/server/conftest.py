"""Drift server fixtures: a fresh database per test (SQLite file, or a PostgreSQL schema that is
dropped afterwards), the app on it, and an httpx client over the ASGI transport.

`db_url` is parametrized over both databases, so every test that uses it runs on each.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SERVER_SRC = REPO / "server"
# The worktree's server package wins over any installed copy (like PYTHONPATH does for the agent).
if str(SERVER_SRC) not in sys.path:
    sys.path.insert(0, str(SERVER_SRC))

pytest.importorskip("fastapi", reason="the drift server needs `pip install ./server`")
pytest.importorskip("sqlalchemy", reason="the drift server needs `pip install ./server`")

import httpx
import sqlalchemy as sa

from tests.heavy import missing
from workspace_agent import wire

PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN = "admin-token-Ahx8Lq2Vb7Rt9Wz3"
SECRET = "enroll-secret-Km4Xy7Pq1Ns8Dv5"
HASH = "a" * 64


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if Path(str(item.fspath)).is_relative_to(here):
            item.add_marker(pytest.mark.server)


@pytest.fixture(autouse=True)
def no_drift_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server reads DRIFT_* variables: none from the machine may leak into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("DRIFT_"):
            monkeypatch.delenv(name)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pg_reachable() -> str | None:
    try:
        import psycopg

        with psycopg.connect(
            "host=127.0.0.1 port=5432 user=postgres dbname=test", connect_timeout=3
        ):
            return None
    except Exception as exc:  # noqa: BLE001 (any reason becomes the skip message)
        return f"PostgreSQL at 127.0.0.1:5432 (db test) is not reachable: {exc}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL for a brand-new, empty database; PostgreSQL gets its own schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'drift.db'}"
        return
    problem = _pg_reachable()
    if problem:
        missing("PostgreSQL", problem)
    schema = "drift_t_" + uuid.uuid4().hex[:12]
    admin = sa.create_engine(PG_BASE)
    with admin.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{PG_BASE}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
        admin.dispose()


@dataclass
class Clock:
    """A clock the test moves by hand (stale detection without sleeping)."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_settings(db_url: str, **overrides: Any) -> Any:
    from workspace_agent_server.settings import Settings

    values: dict[str, Any] = {
        "db_url": db_url,
        "enrollment_secret": SECRET,
        "admin_tokens": ADMIN,
        "heartbeat_interval_s": 60,
        "stale_after_heartbeats": 3,
    }
    values.update(overrides)
    return Settings(**values)


def rule(
    rule_id: str,
    state: str = "compliant",
    before: str | None = None,
    after: str | None = None,
    target: str = "~/.config/x.json",
    message: str | None = None,
) -> dict[str, Any]:
    return {
        "rule_id": rule_id,
        "target": target,
        "state": state,
        "before": before,
        "after": after,
        "message": message,
    }


def make_report(
    workspace_id: str,
    rules: list[dict[str, Any]],
    *,
    name: str = "",
    owner: str = "alice",
    report_id: str | None = None,
    kind: str = "check",
    at: datetime | None = None,
    exit_code: int | None = None,
    level: str = "standard",
    key_level: str | None = "standard",
) -> dict[str, Any]:
    """A valid wire.Report as JSON-able dict (checked against the shared model)."""
    at = at or datetime.now(UTC)
    if exit_code is None:
        states = {r["state"] for r in rules}
        exit_code = (2 if states & {"drift", "corrected"} else 0) | (4 if "error" in states else 0)
    report = wire.Report(
        report_id=report_id or uuid.uuid4().hex,
        kind=kind,  # type: ignore[arg-type]
        workspace=wire.WorkspaceIdentity(id=workspace_id, name=name or workspace_id, owner=owner),
        agent_version="0.1.0",
        desired_sha256=HASH,
        prompt_sha256="b" * 64,
        enforcement_level=level,
        key_enforcement_level=key_level,
        key_source="provisioner",
        exit_code=exit_code,
        started_at=at - timedelta(seconds=1),
        finished_at=at,
        rules=[wire.RuleResultWire(**r) for r in rules],
    )
    return report.model_dump(mode="json")


@dataclass
class Api:
    """The app plus a client; helpers speak the wire format like the agent does."""

    app: Any
    client: httpx.AsyncClient
    db_url: str
    clock: Clock

    async def enroll(self, workspace_id: str, name: str = "", owner: str = "alice") -> str:
        resp = await self.client.post(
            wire.ENROLL_PATH,
            headers={"Authorization": f"Bearer {SECRET}"},
            json={
                "workspace": {"id": workspace_id, "name": name or workspace_id, "owner": owner},
                "agent_version": "0.1.0",
            },
        )
        assert resp.status_code == 200, resp.text
        return str(wire.EnrollResponse.model_validate(resp.json()).workspace_token)

    async def report(self, token: str, body: dict[str, Any] | bytes) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        if isinstance(body, bytes):
            return await self.client.post(
                wire.REPORTS_PATH,
                content=body,
                headers={**headers, "Content-Type": "application/json"},
            )
        return await self.client.post(wire.REPORTS_PATH, json=body, headers=headers)

    async def admin(self, path: str, method: str = "GET", **params: Any) -> httpx.Response:
        return await self.client.request(
            method, path, params=params or None, headers={"Authorization": f"Bearer {ADMIN}"}
        )

    def rows(self) -> dict[str, int]:
        """Row count of every table: to prove a refused request changed nothing."""
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                names = ["workspaces", "rule_states", "transitions", "reports"]
                return {
                    n: conn.execute(sa.text(f"SELECT count(*) FROM {n}")).scalar_one()
                    for n in names
                }
        finally:
            engine.dispose()

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table (sorted): a stronger 'nothing changed' check."""
        engine = sa.create_engine(self.db_url)
        try:
            with engine.connect() as conn:
                out = {}
                for n in ["workspaces", "rule_states", "transitions", "reports"]:
                    out[n] = sorted(
                        tuple(map(str, r)) for r in conn.execute(sa.text(f"SELECT * FROM {n}"))
                    )
                return out
        finally:
            engine.dispose()


@pytest.fixture
def api_factory(db_url: str, clock: Clock) -> Callable[..., Any]:
    """api_factory(**settings) → async context manager yielding an Api (lifespan running)."""
    import contextlib

    from workspace_agent_server.app import create_app

    @contextlib.asynccontextmanager
    async def make(**overrides: Any) -> AsyncIterator[Api]:
        app = create_app(make_settings(db_url, **overrides), clock=clock)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://drift.test") as c:
                yield Api(app, c, db_url, clock)

    return make


@pytest.fixture
async def api(api_factory: Callable[..., Any]) -> AsyncIterator[Api]:
    async with api_factory() as a:
        yield a


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_env(**extra: str) -> dict[str, str]:
    """Environment for a real server process: the worktree's packages first, our secrets."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("DRIFT_")}
    env.update(
        {
            "PYTHONPATH": os.pathsep.join([str(REPO), str(SERVER_SRC)]),
            "DRIFT_ENROLLMENT_SECRET": SECRET,
            "DRIFT_ADMIN_TOKENS": ADMIN,
        }
    )
    env.update(extra)
    return env


def wait_healthy(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float = 30) -> None:
    """Until a server process started by a test answers /health (fail with its log if it dies)."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"server exited: {log.read_text()}"
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"server did not answer: {log.read_text()}"
        time.sleep(0.1)


@contextmanager
def serving(db_url: str, log: Path, port: int | None = None, **env: str) -> Iterator[str]:
    """`workspace-agent-server` as a real process on 127.0.0.1 until the block ends (SIGINT)."""
    port = port or free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "workspace_agent_server",
                "--db",
                db_url,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            cwd=REPO,
            env=server_env(**env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, url, log)
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, log.read_text()
