"""Everything a workspace's runs produce is scanned for its secrets: the virtual key, the
provisioner secret, the enrollment secret and every drift token. Allowed only in the files made
for them (0600, owned by the user); never in stdout, stderr, diffs, reports sent, queued reports,
state files or any other file. Real processes, real loopback stand-ins, happy and failing paths.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.faults.workspace import (
    AS_NOBODY,
    NOBODY,
    Workspace,
    can_run_as_nobody,
    give_to_nobody,
    write,
)
from tests.standins.drift_server import run_drift_server
from tests.standins.litellm_info import Account, run_litellm_info
from tests.standins.provisioner import run_provisioner
from workspace_agent.wire import REPORTS_PATH

PROVISIONER_SECRET = "prov-Secret-Sq2Xm7Wd4Hn"
ENROLLMENT_SECRET = "enroll-Secret-Bt6Yc9Pa3Kr"
WORKSPACE = "ws-secrets-1"
# The files made to hold a secret (relative to the home); everything else must hold none.
SECRET_FILES = {
    ".config/workspace-agent/litellm.key",
    ".config/roo-code/settings.json",
    ".config/zoo-code/settings.json",
    ".config/workspace-agent/drift-token.json",
}


def fragments(secret: str) -> list[str]:
    """The secret and a long piece of its middle (a clipped or re-encoded copy is a leak too)."""
    middle = secret[4:-4] if len(secret) > 16 else secret
    return [secret, middle]


def scan(texts: dict[str, str], secrets: dict[str, str]) -> list[str]:
    return [f"{what} in {where}" for what, secret in secrets.items() for where, text in texts.items()
            if any(piece in text for piece in fragments(secret))]


@pytest.mark.slow
def test_no_secret_outside_its_private_files_across_many_runs(tmp_path: Path) -> None:
    ws = Workspace.prepare(tmp_path / "ws", old_files=True, key="")  # older files, a plaintext block in ~/.bashrc
    outputs: dict[str, str] = {}

    def run(label: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        done = ws.run(*args, **{**base, **env})
        outputs[f"{label}: stdout"] = done.stdout
        outputs[f"{label}: stderr"] = done.stderr
        assert "Traceback" not in done.stderr, f"{label}: {done.stderr}"
        return done

    with run_provisioner("normal", PROVISIONER_SECRET) as prov, \
            run_drift_server(enrollment_secret=ENROLLMENT_SECRET) as drift:
        base = {"CODER_WORKSPACE_ID": WORKSPACE, "CODER_WORKSPACE_OWNER": "alice", "CODER_WORKSPACE_NAME": "dev",
                "PROVISIONER_URL": prov.url, "PROVISIONER_SECRET": PROVISIONER_SECRET,
                "DRIFT_SERVER_URL": drift.url, "DRIFT_ENROLLMENT_SECRET": ENROLLMENT_SECRET,
                "WORKSPACE_AGENT_PROVISION_DEADLINE": "2"}
        assert run("bootstrap", "bootstrap", "--report").returncode == 0
        key = prov.keys[WORKSPACE]
        run("bootstrap again", "bootstrap", "--json", "--report")
        run("check", "check", "--report", "--json")
        # drift in the secret files themselves: their diffs must stay redacted
        roo = ws.home / ".config/roo-code/settings.json"
        roo.write_text(roo.read_text().replace(key, "sk-someone-elses-key-0000"))
        (ws.home / ".config/workspace-agent/litellm.key").chmod(0o644)
        run("plan with drift", "plan")
        run("check with drift", "check", "--json", "--report")
        run("dry run", "bootstrap", "--dry-run", "--json")
        run("status", "status")
        run("status json", "status", "--json")
        run("status short", "status", "--short")
        drift.stop()  # reports wait in the queue
        run("report while down", "report", "--force", "--json")
        run("check while down", "check", "--report")
        drift.restart()
        drift.revoke(WORKSPACE)  # the token is refused: enroll again
        run("report after revoke", "report", "--force", "--json")
        prov.mode = "fail500"  # the provisioner fails: the stored key carries on
        run("bootstrap, provisioner failing", "bootstrap", "--json")
        prov.mode = "normal"
        run("bootstrap, wrong provisioner secret", "bootstrap", PROVISIONER_SECRET="wrong-secret-value")
        with run_litellm_info({key: Account(spend=1.25)}) as info:
            run("usage", "usage", "--gateway-url", info.url)
            run("usage json", "usage", "--json", "--gateway-url", info.url)
            run("models", "models", "--gateway-url", info.url)
        run("usage, gateway down", "usage", "--gateway-url", "http://127.0.0.1:9")
        tokens = {f"drift token {n}": t for n, t in enumerate(
            {p.headers["authorization"].split()[1] for p in drift.posts(REPORTS_PATH)} | set(drift.tokens))}
        sent = {f"report sent {n}": p.body for n, p in enumerate(drift.posts(REPORTS_PATH))}
        assert len(sent) >= 5

    secrets = {"virtual key": key, "provisioner secret": PROVISIONER_SECRET,
               "enrollment secret": ENROLLMENT_SECRET, **tokens}
    files: dict[str, str] = {}
    holders: dict[str, int] = {}
    for path in sorted(ws.root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            rel = str(path.relative_to(ws.home)) if path.is_relative_to(ws.home) else str(path.relative_to(ws.root))
            content = path.read_bytes().decode("utf-8", errors="replace")
            if any(piece in content for secret in secrets.values() for piece in fragments(secret)):
                holders[rel] = path.stat().st_mode
            else:
                files[rel] = content
    assert scan(outputs, secrets) == []
    assert scan(sent, secrets) == []
    assert set(holders) <= SECRET_FILES, f"secrets found in {sorted(set(holders) - SECRET_FILES)}"
    assert set(holders) == SECRET_FILES
    for rel, mode in holders.items():
        path = ws.home / rel
        assert stat.S_IMODE(mode) == 0o600, f"{rel} is {stat.S_IMODE(mode):04o}"
        assert path.stat().st_uid == os.geteuid(), f"{rel} is not the user's"
    assert any("spool" in rel for rel in files) or any("queue" in o for o in outputs.values())
    assert any("readable by others" in text for text in outputs.values()), "the 0644 key file was noted"


@pytest.mark.slow
def test_a_key_file_of_another_owner_becomes_the_users_own(tmp_path: Path) -> None:
    """As the workspace user: a key file left by root (0644) is rewritten as the user's, 0600."""
    if not can_run_as_nobody():
        pytest.skip("needs root and setpriv to run the agent as an ordinary user")
    ws = Workspace.prepare(tmp_path / "ws", old_files=False)
    key_file = ws.home / ".config/workspace-agent/litellm.key"
    write(key_file, ws.extra_env["LITELLM_API_KEY"] + "\n", 0o644)
    give_to_nobody(ws.root)
    os.chown(key_file, 0, 0)
    check = ws.run("check", "--json", prefix=AS_NOBODY)
    rule = {r["rule_id"]: r for r in json.loads(check.stdout)["rules"]}["key.file"]
    assert rule["state"] == "drift"
    assert (rule["before"], rule["after"]) == ("mode 0644, owner uid 0", f"mode 0600, owner uid {NOBODY}")
    done = ws.run("bootstrap", "--json", prefix=AS_NOBODY)
    assert done.returncode == 0, done.stderr
    info = key_file.stat()
    assert (info.st_uid, stat.S_IMODE(info.st_mode)) == (NOBODY, 0o600)
    assert key_file.read_text() == ws.extra_env["LITELLM_API_KEY"] + "\n"
    again = ws.run("check", "--json", prefix=AS_NOBODY)
    assert {r["rule_id"]: r["state"] for r in json.loads(again.stdout)["rules"]}["key.file"] == "compliant"
