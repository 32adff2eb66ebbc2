"""`workspace-agent-server` as a real process: uvicorn on 127.0.0.1, the API over the network,
restart on the same database, and sentences (not tracebacks) for bad settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.server.conftest import (
    ADMIN,
    REPO,
    SECRET,
    make_report,
    rule,
    server_env,
    serving,
    wait_healthy,
)
from workspace_agent import wire

# Left out of `scripts/test --fast`: each test starts the server's command line as a process.
pytestmark = pytest.mark.slow


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workspace_agent_server", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env or server_env(),
        cwd=REPO,
        timeout=60,
    )


@pytest.mark.slow
def test_real_uvicorn_process_end_to_end(db_url: str, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with (
        serving(db_url, log, DRIFT_MAX_BODY_BYTES="8192") as url,
        httpx.Client(base_url=url, timeout=10) as client,
    ):
        enrolled = client.post(
            wire.ENROLL_PATH,
            headers={"Authorization": f"Bearer {SECRET}"},
            json={
                "workspace": {"id": "ws-live", "name": "live", "owner": "o"},
                "agent_version": "0.1.0",
            },
        )
        assert enrolled.status_code == 200, enrolled.text
        token = enrolled.json()["workspace_token"]
        auth = {"Authorization": f"Bearer {token}"}
        body = make_report("ws-live", [rule("a", "drift", "1", "2")])
        assert client.post(wire.REPORTS_PATH, json=body, headers=auth).json()["duplicate"] is False
        assert client.post(wire.REPORTS_PATH, json=body, headers=auth).json()["duplicate"] is True
        # Oversized over a real socket: the client still gets the 413 and its message.
        big = make_report("ws-live", [rule(f"r{i}", "drift", "x" * 200, "y") for i in range(100)])
        resp = client.post(wire.REPORTS_PATH, json=big, headers=auth)
        assert resp.status_code == 413 and "8192 bytes" in resp.json()["detail"]
        fleet = client.get(wire.WORKSPACES_PATH, headers={"Authorization": f"Bearer {ADMIN}"})
        assert fleet.json()["counts"]["drifted"] == 1
        assert "drift_reports_ingested_total 1" in client.get("/metrics").text
        assert client.get("/openapi.json").json()["info"]["title"].startswith("workspace-agent")
    # Restart on the same database: schema migration is idempotent, data is still there.
    with serving(db_url, log) as url:
        fleet = httpx.get(url + wire.WORKSPACES_PATH, headers={"Authorization": f"Bearer {ADMIN}"})
        assert [w["id"] for w in fleet.json()["workspaces"]] == ["ws-live"]
        again = httpx.post(url + wire.REPORTS_PATH, json=body, headers=auth)
        assert again.json()["duplicate"] is True
    assert "Traceback" not in log.read_text()


def test_bad_settings_are_one_sentence(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'x.db'}"
    short = run_cli("--db", db, env=server_env(DRIFT_ADMIN_TOKENS="short"))
    assert short.returncode != 0 and "Traceback" not in short.stderr
    assert "DRIFT_ADMIN_TOKENS is too short" in short.stderr
    hook = run_cli("--db", db, "--webhook-url", "http://127.0.0.1:9/x")
    assert hook.returncode != 0 and "DRIFT_WEBHOOK_SECRET" in hook.stderr
    assert "Traceback" not in hook.stderr


@pytest.mark.parametrize(
    "url, says",
    [
        ("sqlite:////nonexistent-dir/sub/drift.db", "cannot open the database"),
        ("mysql://x@127.0.0.1/db", "unsupported database"),
        ("not a url", "is not valid"),
        ("postgresql+psycopg://nobody:pw@127.0.0.1:1/x", "cannot open the database"),
    ],
)
def test_bad_database_is_one_sentence(url: str, says: str) -> None:
    result = run_cli("--db", url)
    assert result.returncode == 1, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert "pw@" not in result.stderr  # no password in the message


def test_secret_files(tmp_path: Path) -> None:
    from workspace_agent_server.cli import settings_from_args

    (tmp_path / "admins").write_text("# admins\nadmin-one-Xq9Wm2Lk5Rv8\n\nadmin-two-Pz4Ty7Bn1Cs3\n")
    (tmp_path / "secret").write_text("enroll-file-Hw6Jd3Ka8Fe2\n")
    settings, _ = settings_from_args(
        [
            "--admin-tokens-file",
            str(tmp_path / "admins"),
            "--enrollment-secret-file",
            str(tmp_path / "secret"),
            "--db",
            "sqlite:///x.db",
            "--stale-after",
            "5",
        ]
    )
    assert [t.get_secret_value() for t in settings.admin_tokens] == [
        "admin-one-Xq9Wm2Lk5Rv8",
        "admin-two-Pz4Ty7Bn1Cs3",
    ]
    assert settings.enrollment_secret.get_secret_value() == "enroll-file-Hw6Jd3Ka8Fe2"
    assert settings.stale_after_heartbeats == 5
    assert "enroll-file" not in repr(settings) and "admin-one" not in json.dumps(
        settings.model_dump(mode="json")
    )
    missing = run_cli("--enrollment-secret-file", str(tmp_path / "nope"))
    assert missing.returncode != 0 and "cannot read the enrollment secret file" in missing.stderr


@pytest.mark.slow
def test_two_workers_share_settings_and_revocation(tmp_path: Path) -> None:
    """`--workers 2`: both processes get the settings checked by the command line (secrets from
    files included), and a token revoked through one is refused by both, also when cached."""
    import os
    import signal

    from tests.server.conftest import free_port

    (tmp_path / "secret").write_text(SECRET + "\n")
    (tmp_path / "admins").write_text(ADMIN + "\n")
    env = {k: v for k, v in server_env().items() if not k.startswith("DRIFT_")}
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    args = ["--db", f"sqlite:///{tmp_path / 'drift.db'}", "--port", str(port), "--workers", "2"]
    args += ["--enrollment-secret-file", str(tmp_path / "secret")]
    args += ["--admin-tokens-file", str(tmp_path / "admins"), "--log-level", "warning"]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "workspace_agent_server", *args],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_healthy(proc, url, log, timeout=60)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        assert len(children) >= 2, children

        def fresh(method: str, path: str, **kw: object) -> httpx.Response:
            with httpx.Client(base_url=url, timeout=10) as c:  # a new connection: any worker
                return c.request(method, path, **kw)  # type: ignore[arg-type]

        enrolled = fresh(
            "POST",
            wire.ENROLL_PATH,
            headers={"Authorization": f"Bearer {SECRET}"},
            json={"workspace": {"id": "ws-0"}, "agent_version": "0.1.0"},
        )
        assert enrolled.status_code == 200, enrolled.text
        token = {"Authorization": f"Bearer {enrolled.json()['workspace_token']}"}
        for _ in range(20):  # both workers see (and cache) the token
            sent = fresh(
                "POST", wire.REPORTS_PATH, json=make_report("ws-0", [rule("a")]), headers=token
            )
            assert sent.status_code == 200, sent.text
        revoked = fresh(
            "POST",
            f"{wire.WORKSPACES_PATH}/ws-0/revoke",
            headers={"Authorization": f"Bearer {ADMIN}"},
        )
        assert revoked.status_code == 200
        for _ in range(20):
            refused = fresh(
                "POST",
                wire.REPORTS_PATH,
                json=make_report("ws-0", [rule("a", "drift")]),
                headers=token,
            )
            assert refused.status_code == 401 and refused.json()["reason"] == "revoked"
        detail = fresh(
            "GET", f"{wire.WORKSPACES_PATH}/ws-0", headers={"Authorization": f"Bearer {ADMIN}"}
        ).json()
        assert len(detail["reports"]) == 20 and detail["status"] == "compliant"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            code = proc.wait(30)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
