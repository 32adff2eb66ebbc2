"""Run a real LiteLLM 1.108.7 proxy with its own PostgreSQL database on loopback, for tests.

What `scripts/install-test-deps litellm-db` prepared (WA_LITELLM_DB):
  client/prisma     prisma-client-py 0.15 generated for LiteLLM's schema.prisma (put first on
                    the proxy's PYTHONPATH, so the cached venv stays untouched)
  schema.sql        LiteLLM's own SQL migrations (litellm-proxy-extras), in order
  bin/query-engine  the query engine the client spawns: tests/litellm_db/query_engine.mjs
                    running Prisma's Wasm engine (the native one cannot be downloaded here)

`start_db_proxy(venv, component, workdir)` makes a fresh database (`litellm-db_<random>`),
applies schema.sql with psql, and starts `litellm` with DISABLE_SCHEMA_UPDATE=true, a master
key, mock models that cost money (so spend is not zero) and this project's enforcement hook,
installed from a wheel as tests/litellm_proxy.py does. `DbProxy.stop()` stops it and drops the
database.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import REPO
from tests.litellm_proxy import free_port, install_project

POSTGRES = os.environ.get("WA_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432")
SHIM = REPO / "tests" / "litellm_db" / "query_engine.mjs"
MASTER_KEY = "sk-master-db-test-Lq7Vb2Xc9Tz4"
RESPONSE = "ok"


@dataclass(frozen=True)
class MockModel:
    """A model as users name it, the provider route LiteLLM logs, and what a token costs."""

    name: str
    route: str
    input_cost: float  # USD per prompt token
    output_cost: float  # USD per completion token


MODELS = (
    MockModel("claude-sonnet", "openai/claude-sonnet-4-5", 3e-6, 1.5e-5),
    MockModel("claude-haiku", "openai/claude-haiku-4-5", 1e-6, 5e-6),
    MockModel("claude-opus", "openai/claude-opus-4", 1.5e-5, 7.5e-5),
    # The names this project's settings/models.toml gives Roo Code and OpenCode by default.
    MockModel("claude-sonnet-4-5", "openai/claude-sonnet-4-5", 3e-6, 1.5e-5),
    MockModel("claude-haiku-4-5", "openai/claude-haiku-4-5", 1e-6, 5e-6),
)


def _config() -> str:
    models = "".join(
        f"""  - model_name: {m.name}
    litellm_params:
      model: {m.route}
      mock_response: "{RESPONSE}"
      api_key: fake
      input_cost_per_token: {m.input_cost!r}
      output_cost_per_token: {m.output_cost!r}
"""
        for m in MODELS
    )
    return f"""model_list:
{models}general_settings:
  master_key: {MASTER_KEY}
  proxy_batch_write_at: 1
litellm_settings:
  callbacks: ["workspace_agent.litellm_hook.enforcement.handler"]
"""


def psql(database: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["psql", f"{POSTGRES}/{database}", "-q", "-v", "ON_ERROR_STOP=1", *args],
        capture_output=True, text=True, timeout=timeout, check=False,
        env={**os.environ, "PGOPTIONS": "-c client_min_messages=error"},
    )


class DatabaseUnavailable(RuntimeError):
    """PostgreSQL cannot be reached or refuses to make a database (not a LiteLLM failure)."""


def create_database(schema_sql: Path) -> str:
    """A new database with LiteLLM's tables; its name."""
    name = f"litellm-db_{uuid.uuid4().hex[:12]}"
    try:
        made = psql("postgres", "-c", f'CREATE DATABASE "{name}"', timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DatabaseUnavailable(f"psql could not reach {POSTGRES}: {exc}") from exc
    if made.returncode != 0:
        raise DatabaseUnavailable(f"cannot create a database at {POSTGRES}: {made.stderr.strip()}")
    applied = psql(name, "-f", str(schema_sql), timeout=300)
    if applied.returncode != 0:
        drop_database(name)
        raise RuntimeError(f"LiteLLM's migrations did not apply: {applied.stderr.strip()[-2000:]}")
    return name


def drop_database(name: str) -> None:
    psql("postgres", "-c", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class DbProxy:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path
    database: str
    site: Path  # where the project's wheel is installed for the proxy
    startup_s: float = 0.0
    stopped: bool = field(default=False)

    @property
    def database_url(self) -> str:
        return f"{POSTGRES}/{self.database}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def request(self, method: str, path: str, key: str = MASTER_KEY, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, self.url + path, headers=headers, timeout=60, **kwargs)

    def sql(self, query: str) -> list[list[str]]:
        """Rows of a query on the proxy's database (fields as text, `|`-separated by psql)."""
        answer = psql(self.database, "-At", "-c", query)
        if answer.returncode != 0:
            raise AssertionError(f"psql failed: {answer.stderr}")
        return [line.split("|") for line in answer.stdout.splitlines() if line]

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        drop_database(self.database)


# With DISABLE_SCHEMA_UPDATE the proxy still runs `prisma migrate diff` at start, only to log
# what it would change; it needs Prisma's schema engine, which cannot be downloaded here, so it
# fails after 25-30 s of importing the client and starting the Prisma CLI, and the proxy goes on
# ("no diff"). This `prisma`, first on the proxy's PATH, fails at once with the reason instead.
_NO_PRISMA_CLI = """#!/bin/sh
echo "prisma $*: not run by the tests (no Prisma schema engine on this machine; the schema is LiteLLM's SQL migrations)" >&2
exit 1
"""


def proxy_env(venv: str, component: str, workdir: Path, site: Path, database_url: str) -> dict[str, str]:
    node_dir = os.path.dirname(shutil.which("node") or "/usr/bin/node")
    tools = workdir / "bin"
    tools.mkdir(exist_ok=True)
    (tools / "prisma").write_text(_NO_PRISMA_CLI, encoding="utf-8")
    (tools / "prisma").chmod(0o755)
    return {
        "PATH": os.pathsep.join([str(tools), f"{venv}/bin", node_dir, "/usr/bin", "/bin"]),
        "HOME": str(workdir),
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        # The generated client first: it shadows the venv's ungenerated `prisma` package.
        "PYTHONPATH": os.pathsep.join([str(site), str(workdir), f"{component}/client"]),
        "PYTHONUNBUFFERED": "1",
        "DATABASE_URL": database_url,
        "DISABLE_SCHEMA_UPDATE": "true",
        "PRISMA_QUERY_ENGINE_BINARY": f"{component}/bin/query-engine",
        "WA_PRISMA_SHIM": str(SHIM),
        "PRISMA_BINARY_CACHE_DIR": component,  # the Prisma CLI, should anything run it
        "PRISMA_HIDE_UPDATE_MESSAGE": "1",
        "CHECKPOINT_DISABLE": "1",
        # Budget windows: check for keys to reset every 1-2 s instead of every 10 minutes.
        "PROXY_BUDGET_RESCHEDULER_MIN_TIME": "1",
        "PROXY_BUDGET_RESCHEDULER_MAX_TIME": "2",
    }


def start_db_proxy(venv: str, component: str, workdir: Path, ready_within: float = 300.0) -> DbProxy:
    """A fresh database and a proxy on it; raise with the proxy's log if it does not come up
    (DatabaseUnavailable when PostgreSQL is the problem)."""
    database = create_database(Path(component) / "schema.sql")
    try:
        return _start_on(database, venv, component, workdir, ready_within)
    except BaseException:
        drop_database(database)
        raise


def _start_on(database: str, venv: str, component: str, workdir: Path, ready_within: float) -> DbProxy:
    workdir.mkdir(parents=True, exist_ok=True)
    site = install_project(workdir)
    config = workdir / "config.yaml"
    config.write_text(_config(), encoding="utf-8")
    log_path = workdir / "proxy.log"
    port = free_port()
    env = proxy_env(venv, component, workdir, site, f"{POSTGRES}/{database}")
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [f"{venv}/bin/litellm", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    proxy = DbProxy(f"http://127.0.0.1:{port}", process, log_path, database, site)
    while True:
        if process.poll() is not None:
            proxy.stop()
            raise RuntimeError(f"litellm exited with {process.returncode} before it was ready:\n{proxy.log()[-4000:]}")
        try:
            if httpx.get(proxy.url + "/health/readiness", timeout=2.0).json().get("db") == "connected":
                break
        except (httpx.HTTPError, ValueError):
            pass
        if time.monotonic() - started > ready_within:
            proxy.stop()
            raise RuntimeError(f"litellm was not ready within {ready_within:g} s:\n{proxy.log()[-4000:]}")
        time.sleep(0.25)
    proxy.startup_s = time.monotonic() - started
    return proxy
