"""The provisioner as a real process (`python -m key_provisioner serve`, uvicorn on loopback),
used by the real agent (`python -m workspace_agent bootstrap`) and by the platform's own request
format, with loopback stand-ins of Coder and LiteLLM.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, CliResult
from tests.identity.conftest import PROVISIONER_SECRET, SERVER_SRC
from tests.standins.coder_agent_api import CoderStandin
from tests.standins.litellm_keys import LitellmKeys

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEY_PROVISIONER_", "CODER_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(SERVER_SRC)])
    env.update(extra)
    return env


@pytest.fixture
def provisioner(
    prov_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[str, Path, dict[str, str]]]:
    """The provisioner in legacy mode: agent tokens are verified, requests without one are served."""
    port = free_port()
    env = process_env({**prov_env, "KEY_PROVISIONER_IDENTITY": "legacy"})
    log = tmp_path / "provisioner.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "key_provisioner",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=1) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the provisioner did not start:\n{log.read_text()}")
            time.sleep(0.1)
        yield url, log, env
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def platform_request(url: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """What the platform's startup script sends (curl, the shared secret, no agent token)."""
    request = urllib.request.Request(
        url + "/api/v1/keys/workspace",
        data=json.dumps(body).encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {PROVISIONER_SECRET}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_agent_and_the_platform_format_against_a_real_provisioner(
    provisioner: tuple[str, Path, dict[str, str]],
    coder: CoderStandin,
    litellm: LitellmKeys,
    cli_proc: Callable[..., CliResult],
    home: Path,
) -> None:
    url, log, server_env = provisioner
    ws, other = coder.add_workspace(owner="alice", name="dev"), coder.add_workspace(owner="mallory")
    agent_env = {
        "HOME": str(home),
        "CODER_WORKSPACE_ID": ws.id,
        "CODER_WORKSPACE_OWNER": "alice",
        "CODER_WORKSPACE_NAME": "dev",
        "PROVISIONER_URL": url,
        "PROVISIONER_SECRET": PROVISIONER_SECRET,
        "WORKSPACE_AGENT_PROVISION_DEADLINE": "5",
    }
    # 1. The real agent, with its own agent token: a key, and Coder vouched for the workspace.
    good = cli_proc("bootstrap", "--json", env={**agent_env, "CODER_AGENT_TOKEN": ws.agent.token})
    summary = json.loads(good.out)
    assert good.code == 0, good.all
    assert (summary["key"]["source"], summary["key"]["identity"]) == (
        "provisioner",
        "coder-agent-token",
    )
    assert "workspace verified by Coder" in cli_proc("status", env=agent_env).out
    key_file = home / ".config" / "workspace-agent" / "litellm.key"
    key = key_file.read_text().strip()

    # 2. Another workspace's token with this workspace's id: refused, and nothing handed out.
    key_file.unlink()
    stolen = cli_proc("bootstrap", env={**agent_env, "CODER_AGENT_TOKEN": other.agent.token})
    assert stolen.code == 4  # the key rules fail; everything else was still applied
    assert "forbade the request (403: this agent token does not belong to workspace" in stolen.all
    assert not key_file.exists() and key not in stolen.all

    # 3. The platform's own request (no agent token) still works in legacy mode.
    status, body = platform_request(
        url,
        {
            "workspace_id": "ws-from-the-template",
            "username": "bob",
            "workspace_name": "x",
            "enforcement_level": "standard",
            "guardrail_action": "block",
        },
    )
    assert (status, body["reused"], body["identity"]) == (201, False, "provisioner-secret")
    again = platform_request(url, {"workspace_id": "ws-from-the-template", "username": "bob"})
    assert again[0] == 200 and again[1]["key"] == body["key"]
    assert platform_request(url, {"username": "bob"}) == (
        400,
        {"error": "workspace_id and username are required"},
    )

    # 4. What the provisioner recorded and logged: events, never a key or a token.
    events = subprocess.run(
        [sys.executable, "-m", "key_provisioner", "events", "--json"],
        check=False,
        env=server_env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert events.returncode == 0, events.stderr
    kinds = [json.loads(line)["kind"] for line in events.stdout.splitlines()]
    assert {"key-issued", "identity-refused", "legacy-request"} <= set(kinds)
    everything = log.read_text() + events.stdout
    for secret in (
        key,
        body["key"],
        ws.agent.token,
        other.agent.token,
        PROVISIONER_SECRET,
        litellm.master_key,
        server_env["KEY_PROVISIONER_DERIVATION_SECRET"],
        coder.api_token,
    ):
        assert secret not in everything
    assert "legacy request without a verified identity" in everything


def test_bad_settings_stop_the_command_with_a_sentence(tmp_path: Path) -> None:
    env = process_env(
        {
            "PROVISIONER_SECRET": "Prov-Secret-7f3a9c2e1b",
            "LITELLM_MASTER_KEY": "sk-master-x1",
            "KEY_PROVISIONER_DERIVATION_SECRET": "short",
            "KEY_PROVISIONER_IDENTITY": "legacy",
        }
    )
    run = subprocess.run(
        [sys.executable, "-m", "key_provisioner", "serve"],
        check=False,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert run.returncode == 1
    assert run.stderr.strip() == (
        "workspace-key-provisioner: KEY_PROVISIONER_DERIVATION_SECRET is too short: use "
        "at least 32 random characters (e.g. `python -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'`)"
    )
    missing = subprocess.run(
        [sys.executable, "-m", "key_provisioner", "events"],
        check=False,
        env={**env, "KEY_PROVISIONER_DB": str(tmp_path / "none.db")},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert missing.returncode == 1 and "no provisioner database at" in missing.stderr
    assert "Traceback" not in run.stderr + missing.stderr
