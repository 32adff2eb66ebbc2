"""Start the real drift server (its own CLI, as deployed) on a database for the benchmarks.

The server distribution lives in server/ of this repository; when it is not installed, its
source directory is put on PYTHONPATH. PostgreSQL runs get a schema of their own (dropped at the
end), so a run never touches anything else in the database.
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

from benchmarks.services import Service, free_port, service

REPO = Path(__file__).resolve().parent.parent
PG_BASE = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def server_source() -> Path | None:
    """Where the server package is: server/ of this checkout (the code being measured), else an
    installed copy (None: nothing to add to PYTHONPATH)."""
    source = REPO / "server"
    if (source / "workspace_agent_server" / "__init__.py").is_file():
        return source
    if importlib.util.find_spec("workspace_agent_server") is not None:
        return None
    raise RuntimeError("the drift server (server/) is not in this checkout and not installed")


def server_available() -> bool:
    try:
        server_source()
    except RuntimeError:
        return False
    return True


def python_path() -> str:
    """PYTHONPATH for server processes: this checkout's agent and server packages win."""
    source = server_source()
    return f"{REPO}:{source}" if source else str(REPO)


@contextlib.contextmanager
def pg_schema(base: str = PG_BASE) -> Iterator[str]:
    """A database URL on a fresh PostgreSQL schema, dropped afterwards."""
    import psycopg

    schema = "bench_" + uuid.uuid4().hex[:12]
    dsn = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def pg_available(base: str = PG_BASE) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(base.replace("postgresql+psycopg://", "postgresql://"), connect_timeout=3):
            return None
    except Exception as exc:  # noqa: BLE001 - any failure means: skip PostgreSQL, say why
        return f"{type(exc).__name__}: {exc}"


class Credentials:
    """The secrets a benchmark server runs with (random per run)."""

    def __init__(self) -> None:
        self.enrollment = secrets.token_urlsafe(24)
        self.admin = secrets.token_urlsafe(24)


@contextlib.contextmanager
def drift_server(python: str, db_url: str, creds: Credentials, env: Mapping[str, str], *,
                 log: Path | None = None, heartbeat_s: int = 300) -> Iterator[Service]:
    """`workspace-agent-server` on a free loopback port, warnings only (no access log)."""
    port = free_port()
    argv = [python, "-m", "workspace_agent_server", "--db", db_url, "--host", "127.0.0.1",
            "--port", str(port), "--log-level", "warning", "--heartbeat-interval", str(heartbeat_s)]
    # A simulated fleet enrolls from one loopback address: lift the per-address enrollment limit
    # (issue 15) that a real fleet, spread over many addresses, never meets.
    full_env = {"DRIFT_ENROLL_RATE_LIMIT": "1000000", **env, "PYTHONPATH": python_path(),
                "DRIFT_ENROLLMENT_SECRET": creds.enrollment, "DRIFT_ADMIN_TOKENS": creds.admin}
    with service(argv, full_env, cwd=REPO, log=log, timeout=120,
                 ready=f"http://127.0.0.1:{port}/health") as running:
        yield running


@contextlib.contextmanager
def hello_server(python: str, env: Mapping[str, str], *, log: Path | None = None) -> Iterator[Service]:
    port = free_port()
    argv = [python, "-m", "benchmarks.hello", "--port", str(port)]
    with service(argv, {**env, "PYTHONPATH": str(REPO)}, cwd=REPO, log=log,
                 ready=f"http://127.0.0.1:{port}/health") as running:
        yield running
