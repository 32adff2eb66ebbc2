"""benchmarks/ingest_load.py works end to end at a tiny size: wrk's reports (fresh ids, per-
workspace tokens) are all accepted, the fixed-rate client gets its answers, and the fleet mode
seeds, times the pages and sees the writer's queue."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.heavy import missing
from tests.server.conftest import REPO, server_env

pytestmark = pytest.mark.slow


def run(tmp_path: Path, *args: str) -> dict:  # type: ignore[type-arg]
    out = tmp_path / "result.json"
    done = subprocess.run(
        [sys.executable, "benchmarks/ingest_load.py", *args, "--json", str(out)],
        cwd=REPO,
        env=server_env(),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(out.read_text()))


def test_load_run(tmp_path: Path) -> None:
    if shutil.which("wrk") is None:
        missing("wrk", "scripts/install-test-deps shells (or apt-get install wrk)")
    r = run(tmp_path, "--workspaces", "20", "--duration", "2", "--conns", "4", "--rates", "50")
    (hello,) = r["hello"]
    (ingest,) = r["ingest"]
    (rate,) = r["rate"]
    assert hello["rps"] > 0 and "bad" not in hello
    assert ingest["rps"] > 0 and ingest["bad"] == 0 and "non_2xx" not in ingest
    assert rate["ok"] == rate["sent"] == 100 and rate["errors"] == {}
    assert r["batches"]["reports"] >= ingest["requests"]


def test_fleet_run(tmp_path: Path) -> None:
    r = run(tmp_path, "--fleet", "300", "--heartbeat-rate", "50", "--heartbeat-duration", "2")
    fleet = r["fleet"]
    assert set(fleet["pages_idle"]) >= {"/", "/api/v1/workspaces?limit=200", "/metrics"}
    beat = fleet["heartbeat"]
    assert beat["ok"] == beat["sent"] == 100 and beat["writer_queue_max"] is not None


def test_replicas_run(tmp_path: Path) -> None:
    """The replicas axis: two servers on one SQLite file, the load spread over both, then the
    status burst; every answer 200."""
    if shutil.which("wrk") is None:
        pytest.skip("needs Debian wrk")
    r = run(tmp_path, "--replicas", "1,2", "--workspaces", "20", "--duration", "2", "--conns", "4")
    assert set(r["replicas"]) == {"1", "2"}
    for n, one in r["replicas"].items():
        (ingest,) = one["ingest"]
        assert ingest["rps"] > 0 and ingest["bad"] == 0 and ingest["non_2xx"] == 0, (n, ingest)
        assert one["burst"]["requests"] == 120 * int(n)
        assert set(one["burst"]["statuses"]) == {"admin 200", "report 200"}, one["burst"]
