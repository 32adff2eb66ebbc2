"""The key provisioner misbehaving during a real `bootstrap` process: bounded by the deadline,
one sentence on `key.file`, the lockdown and every key-free file still applied, and no client
config written with an empty or wrong key (or, on a restart, written with the stored key)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import json5
import pytest

from tests.faults.workspace import NEW_KEY, Workspace, write
from tests.standins.provisioner import run_provisioner
from tests.standins.stall import closed_port

# Left out of `scripts/test --fast`: each test runs the agent as a process against a failing provisioner.
pytestmark = pytest.mark.slow

SECRET = "prov-Secret-Kx82hQ-7d"
DEADLINE_S = 2.0
STARTUP_SLACK_S = 2.5  # Python start-up, the rules and the writes, on a busy 2-core machine


@contextmanager
def down() -> Iterator[str]:
    yield closed_port()


def standin(mode: str, secret: str = SECRET) -> Callable[[], Iterator[str]]:
    @contextmanager
    def serve() -> Iterator[str]:
        with run_provisioner(mode, secret, delay=DEADLINE_S + 3) as prov:
            yield prov.url

    return serve


# name → (server, phrase of the key.file message, retried until the deadline)
CASES: dict[str, tuple[Callable[[], Iterator[str]], str, bool]] = {
    "down (connection refused)": (down, "cannot connect ([Errno 111] Connection refused)", True),
    "refusing (connection reset)": (standin("reset"), "Connection reset by peer", True),
    "hanging past the deadline": (standin("hang"), "no answer within", True),
    "slow past the deadline": (standin("slow"), "no answer within", True),
    "HTTP 500": (standin("fail500"), "HTTP 500: Internal Server Error", True),
    "HTTP 502": (standin("fail502"), "HTTP 502: Failed to generate key", True),
    "HTTP 401": (standin("normal", "another-secret"), "rejected the secret (401): check PROVISIONER_SECRET", False),
    "HTML": (standin("garbage"), "with an HTML page instead of JSON", False),
    "invalid JSON": (standin("badjson"), "with a body that is not valid JSON", False),
    "JSON without key": (standin("nokey"), 'without a "key" field', False),
    "empty key": (standin("emptykey"), 'with an empty "key"', False),
    "huge body": (standin("huge"), "with a body larger than 65536 bytes", False),
}


def bootstrap(ws: Workspace, url: str) -> tuple[float, int, dict, str]:
    started = time.monotonic()
    done = ws.run("bootstrap", "--json", CODER_WORKSPACE_ID="ws-1", CODER_WORKSPACE_OWNER="alice",
                  PROVISIONER_SECRET=SECRET, PROVISIONER_URL=url,
                  WORKSPACE_AGENT_PROVISION_DEADLINE=str(DEADLINE_S))
    elapsed = time.monotonic() - started
    assert "Traceback" not in done.stderr and SECRET not in done.stdout + done.stderr
    return elapsed, done.returncode, json.loads(done.stdout), done.stderr


def assert_lockdown_applied(ws: Workspace, summary: dict) -> None:
    settings = json5.loads((ws.home / ".local/share/code-server/User/settings.json").read_text())
    assert settings["chat.disableAIFeatures"] is True and settings["telemetry.telemetryLevel"] == "off"
    assert settings["editor.fontSize"] == 14, "the user's own keys stay"
    states = {r["rule_id"]: r["state"] for r in summary["rules"]}
    assert states["roo.rules"] == states["opencode.enforcement"] == "corrected"
    assert all(s == "corrected" for rule, s in states.items() if rule.startswith("vscode.setting.")), states


def _cases(names: list[str]) -> list[object]:
    """Cases that retry until the deadline take its full length: slow."""
    return [pytest.param(n, marks=pytest.mark.slow) if CASES[n][2] else n for n in names]


@pytest.mark.parametrize("case", _cases(list(CASES)))
def test_a_failing_provisioner_is_bounded_and_no_config_gets_a_bad_key(tmp_path: Path, case: str) -> None:
    server, phrase, retried = CASES[case]
    ws = Workspace.prepare(tmp_path / "ws", old_files=False, key="")
    with server() as url:
        elapsed, code, summary, _err = bootstrap(ws, url)
    assert elapsed < DEADLINE_S + STARTUP_SLACK_S, f"{case}: {elapsed:.1f} s"
    if not retried:
        assert elapsed < 1.0 + STARTUP_SLACK_S, f"{case} must fail at once, took {elapsed:.1f} s"
    assert code == 4
    errors = {r["rule_id"]: r["message"] for r in summary["rules"] if r["state"] == "error"}
    assert list(errors) == ["key.file"] and phrase in errors["key.file"], errors
    key = summary["key"]
    assert (key["source"], key["masked"], key["problem"]) == ("none", None, errors["key.file"])
    assert_lockdown_applied(ws, summary)
    for path in (ws.home / ".config/workspace-agent/litellm.key", ws.home / ".config/roo-code/settings.json",
                 ws.home / ".config/opencode/opencode.json"):
        assert not path.exists(), f"{path} written without a key"


@pytest.mark.parametrize("case", _cases(["HTTP 500", "HTML", "empty key", "hanging past the deadline"]))
def test_on_a_restart_the_stored_key_is_used_never_a_bad_one(tmp_path: Path, case: str) -> None:
    server, phrase, _retried = CASES[case]
    ws = Workspace.prepare(tmp_path / "ws", old_files=False, key="")
    write(ws.home / ".config/workspace-agent/litellm.key", NEW_KEY + "\n", 0o600)
    with server() as url:
        _elapsed, code, summary, _err = bootstrap(ws, url)
    assert code == 0, summary
    assert summary["key"]["source"] == "stored"
    assert any(phrase in n and n.endswith("using the key stored by an earlier start") for n in summary["notes"])
    roo = json.loads((ws.home / ".config/roo-code/settings.json").read_text())
    assert roo["providerProfiles"]["apiConfigs"]["litellm"]["openAiApiKey"] == NEW_KEY
    assert (ws.home / ".config/workspace-agent/litellm.key").read_text() == NEW_KEY + "\n"
    assert_lockdown_applied(ws, summary)
