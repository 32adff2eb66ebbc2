"""End to end on loopback: the real agent (processes, throwaway home) reports to the real server
(a uvicorn process). Break a setting by hand → check reports drift → the server shows it →
bootstrap corrects it → the server shows it corrected, with the first-failing time and history.
And: the server is down while the agent reports → the queue holds → the server is back →
nothing lost, no duplicates."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import json5
import pytest

from tests.conftest import CliResult
from tests.server.conftest import ADMIN, SECRET, free_port, serving
from workspace_agent import wire

pytestmark = pytest.mark.slow
WS = "ws-e2e"
RULE = "roo.auto-import-path"  # the key `roo-cline.autoImportSettingsPath` in User settings
KEY = "roo-cline.autoImportSettingsPath"


def agent_env(url: str) -> dict[str, str]:
    return {
        "DRIFT_SERVER_URL": url,
        "DRIFT_ENROLLMENT_SECRET": SECRET,
        "CODER_WORKSPACE_ID": WS,
        "CODER_WORKSPACE_NAME": "dana-dev",
        "CODER_WORKSPACE_OWNER": "dana",
        "PROVISIONER_URL": url,
    }  # no provisioner here: the key's level stays unknown


def detail(url: str) -> dict[str, Any]:
    resp = httpx.get(
        f"{url}{wire.WORKSPACES_PATH}/{WS}",
        headers={"Authorization": f"Bearer {ADMIN}"},
        timeout=10,
    )
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def rule_of(d: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in d["rules"] if r["rule_id"] == rule_id)


def set_by_hand(home: Path, value: str) -> None:
    """What a developer does in the editor: change one key of the User settings."""
    settings = home / ".local/share/code-server/User/settings.json"
    data = json5.loads(settings.read_text())
    data[KEY] = value
    settings.write_text(json.dumps(data, indent=4))


def test_drift_is_seen_then_corrected_with_history(
    db_url: str, tmp_path: Path, cli_proc: Callable[..., CliResult], keyed_env: str, home: Path
) -> None:
    port = free_port()
    with serving(db_url, tmp_path / "server.log", port=port) as url:
        env = agent_env(url)
        first = cli_proc("bootstrap", "--report", "-q", env=env)
        assert first.code == 0, first.err
        start = detail(url)
        assert start["status"] == "compliant" and start["owner"] == "dana"
        assert rule_of(start, RULE)["state"] in ("compliant", "corrected")

        set_by_hand(home, "/home/coder/my-own-roo.json")
        check = cli_proc("check", "--report", "-q", env=env)
        assert check.code == 2, check.err
        drifted = detail(url)
        assert drifted["status"] == "drifted"
        assert RULE in drifted["failing_rules"]
        seen = rule_of(drifted, RULE)
        assert seen["state"] == "drift" and seen["failing_since"] and not seen["recovered_at"]
        assert "my-own-roo.json" in (seen["before"] or "")
        fleet = httpx.get(
            url + wire.WORKSPACES_PATH,
            params={"drifted": "true"},
            headers={"Authorization": f"Bearer {ADMIN}"},
        ).json()
        assert fleet["counts"]["drifted"] == 1 and [w["id"] for w in fleet["workspaces"]] == [WS]

        fix = cli_proc("bootstrap", "--report", "-q", env=env)
        assert fix.code == 0, fix.err
        fixed = detail(url)
        assert fixed["status"] == "compliant"
        now = rule_of(fixed, RULE)
        assert now["state"] == "corrected"
        assert now["failing_since"] == seen["failing_since"]  # when it first failed
        assert now["recovered_at"] and now["recovered_at"] >= now["failing_since"]
        by_report: dict[str, set[tuple[str | None, str | None, str]]] = {}
        for t in fixed["transitions"]:
            by_report.setdefault(t["report_id"], set()).add(
                (t["rule_id"], t["from_state"], t["to_state"])
            )
        check_id, fix_id = (r["report_id"] for r in fixed["reports"][1::-1])
        assert by_report[fix_id] == {(None, "drifted", "compliant"), (RULE, "drift", "corrected")}
        assert {(None, "compliant", "drifted"), (RULE, "corrected", "drift")} <= by_report[check_id]
        assert not [m for m in by_report[check_id] if m[2] == "drift" and m[0] != RULE]
        assert [r["kind"] for r in fixed["reports"]] == ["bootstrap", "check", "bootstrap"]
        page = httpx.get(f"{url}/workspaces/{WS}", headers={"Authorization": f"Bearer {ADMIN}"})
        assert RULE in page.text and "fixed" in page.text
    assert SECRET not in (tmp_path / "server.log").read_text()


def test_queue_holds_while_the_server_is_down(
    db_url: str, tmp_path: Path, cli_proc: Callable[..., CliResult], keyed_env: str, home: Path
) -> None:
    port = free_port()
    log = tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    env = agent_env(url)
    with serving(db_url, log, port=port):
        assert cli_proc("bootstrap", "--report", "-q", env=env).code == 0
    # Server down: three changes, each queued in order.
    for value in ("/tmp/one.json", "/tmp/two.json", "/tmp/three.json"):
        set_by_hand(home, value)
        check = cli_proc("check", "--report", "-q", env=env)
        assert check.code == 2  # a reporting problem never changes the check's exit code
    short = cli_proc("status", "--short", env=env).out
    assert "queue 3" in short, short
    with serving(db_url, log, port=port):
        sent = json.loads(cli_proc("report", "--json", env=env).out)
        d = detail(url)
        again = json.loads(cli_proc("report", "--json", env=env).out)
        metrics = httpx.get(url + "/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    assert len(sent["sent"]) == 3, sent
    stored = [r["report_id"] for r in reversed(d["reports"])]  # oldest first
    assert stored[1:] == sent["sent"] and len(stored) == len(set(stored)) == 4
    assert rule_of(d, RULE)["before"] is not None and "three.json" in rule_of(d, RULE)["before"]
    assert again["sent"] == []
    assert "drift_reports_duplicate_total 0" in metrics
    assert "queue" not in cli_proc("status", "--short", env=env).out
