"""Load generator, wrk script, fleet simulator and server suite against the real drift server process."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from benchmarks import wrk
from benchmarks.drift import REPO, Credentials, drift_server
from benchmarks.fleet import Workspace, simulate
from benchmarks.server import loadgen, run_server_suite
from tests.heavy import missing

pytestmark = [pytest.mark.server, pytest.mark.slow]
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Credentials]]:
    creds = Credentials()
    with drift_server(sys.executable, f"sqlite:///{tmp_path / 'drift.db'}", creds, ENV,
                      log=tmp_path / "server.log") as running:
        yield running.url, creds


def _metric(url: str, name: str, admin: str) -> float:
    text = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {admin}"}).text  # closed since issue 15
    found = re.search(rf"^{name}(?:{{[^}}]*}})? ([\d.e+]+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _enroll(url: str, creds: Credentials, tmp_path: Path, count: int) -> dict[str, str]:
    tokens_file = tmp_path / "tokens.json"
    out = loadgen(sys.executable, ENV, "enroll", "--url", url, f"--secret={creds.enrollment}", "--count", str(count),  # --secret=: a secret may start with "-"
                  "--concurrency", "4", "--tokens-out", str(tokens_file))
    assert out["ok"] == count and out["errors"] == 0
    return dict(json.loads(tokens_file.read_text()))


def test_enroll_then_open_loop_at_a_fixed_rate(server: tuple[str, Credentials], tmp_path: Path) -> None:
    url, creds = server
    tokens = _enroll(url, creds, tmp_path, 20)
    assert len(tokens) == 20 and all(t.startswith("wat_") for t in tokens.values())
    out = loadgen(sys.executable, ENV, "rate", "--url", url, "--tokens", str(tmp_path / "tokens.json"),
                  "--rate", "40", "--duration", "1", "--drift-every", "5")
    assert out["sent"] == 40 and out["ok"] == 40 and out["errors"] == 0
    assert out["p50_ms"] > 0 and out["p99_ms"] >= out["p50_ms"]
    assert _metric(url, "drift_reports_ingested_total", creds.admin) == 40
    counts = httpx.get(url + "/api/v1/workspaces", headers={"Authorization": f"Bearer {creds.admin}"}).json()["counts"]
    assert counts.get("drifted", 0) >= 1  # every 5th report had a drifted rule


def test_wrk_sends_valid_reports_each_with_its_own_id(server: tuple[str, Credentials], tmp_path: Path) -> None:
    if wrk.available() is None:
        missing("wrk", "scripts/install-test-deps shells (or apt-get install wrk)")
    url, creds = server
    tokens = _enroll(url, creds, tmp_path, 10)
    out = wrk.run(url, "/api/v1/reports", tokens, duration=1, connections=4, threads=1, workdir=tmp_path)
    assert out["requests"] > 10 and out["non_2xx"] == 0
    assert _metric(url, "drift_reports_ingested_total", creds.admin) >= out["requests"] - 4  # wrk may cut the last ones
    assert _metric(url, "drift_reports_duplicate_total", creds.admin) == 0


def test_fleet_simulation_holds_a_small_fleet_and_the_server_sees_its_drift(
    server: tuple[str, Credentials], tmp_path: Path
) -> None:
    url, creds = server
    tokens = _enroll(url, creds, tmp_path, 100)
    fleet = [Workspace(w, t) for w, t in tokens.items()]
    result = asyncio.run(simulate(url, fleet, heartbeat_s=4.0, jitter=0.1, drift_rate=0.3, duration=6.0,
                                  admin_token=creds.admin, page_every_s=1.0))
    assert result["errors"] == 0 and result["held"] is True, result
    assert 110 <= result["due"] <= 190 and result["ok"] >= result["due"] - result["backlog_end"]
    assert result["fleet_page_during_load"]["n"] >= 2
    listing = httpx.get(url + "/api/v1/workspaces?limit=500", headers={"Authorization": f"Bearer {creds.admin}"}).json()
    assert listing["counts"].get("drifted", 0) == sum(1 for ws in fleet if ws.drifted)


def test_fleet_cli_refuses_unbounded_or_remote_runs() -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "benchmarks.fleet", "--secret", "s", *args], cwd=REPO,
                              capture_output=True, check=False, text=True, timeout=60)

    assert "loopback only" in run("--url", "http://drift.example.com:8080").stderr
    assert "bounded runs only" in run("--url", "http://127.0.0.1:1", "--duration", "99999").stderr


def test_server_suite_end_to_end_quick(tmp_path: Path) -> None:
    result = run_server_suite(sys.executable, tmp_path, duration=1, rounds=1, rate=20, rate_duration=1,
                              workspaces=10)
    assert result["hello"]["throughput_rps"] > 0 and result["sqlite"]["throughput_rps"] > 0
    assert result["sqlite"]["fixed_rate"]["ok"] == 20 and result["sqlite"]["errors"] == 0
    assert 0 < result["sqlite"]["fraction_of_hello"] < 2
    assert any("SQLite" in t for t in result["targets"])
    if result["postgresql_skipped"] is None:
        assert result["postgresql"]["fixed_rate"]["ok"] == 20
