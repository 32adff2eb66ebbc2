"""`workspace-agent usage` end to end (in-process CLI) against loopback stand-ins of LiteLLM's
database-backed routes and of the key provisioner. `models` runs against the real proxy in
test_litellm_real.py."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.conftest import CliResult
from tests.standins.litellm_info import Account, run_litellm_info
from tests.standins.provisioner import run_provisioner
from tests.standins.rawhttp import dripping_server
from tests.standins.stall import closed_port, stalled_server
from workspace_agent.paths import Paths

KEY = "sk-selfserve-Jd82kLq0Zx7Vw3Yt"
MASKED = "sk-…w3Yt"

Cli = Callable[..., CliResult]


def store_key(home: Path, key: str = KEY, mode: int = 0o600) -> Path:
    path = Paths.for_home(home, {}).key_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(key + "\n")
    path.chmod(mode)
    return path


def no_secret(result: CliResult) -> None:
    assert KEY not in result.all
    assert KEY[3:] not in result.all


def test_no_key_says_run_bootstrap(cli: Cli) -> None:
    result = cli("usage", "--gateway-url", closed_port())
    assert result.code == 10
    assert "no AI key yet" in result.err and "workspace-agent bootstrap" in result.err and "LITELLM_API_KEY" in result.err
    assert result.out == ""


def test_no_key_as_json(cli: Cli) -> None:
    result = cli("usage", "--json")
    doc = json.loads(result.out)
    assert result.code == doc["exit_code"] == 10
    assert doc["ok"] is False and doc["error"]["kind"] == "no_key" and doc["schema"] == "workspace-agent.ai-usage/1"


def test_usage_from_litellm_with_the_stored_key(cli: Cli, home: Path) -> None:
    store_key(home)
    account = Account(spend=2.5, max_budget=10.0, level="standard", models=["claude-sonnet-4-5", "claude-haiku-4-5"])
    with run_litellm_info({KEY: account}) as info:
        result = cli("usage", "--gateway-url", info.url)
    assert result.code == 0, result.err
    no_secret(result)
    out = result.out
    assert f"ai-usage: key {MASKED} (workspace-ws-1), from LiteLLM /key/info + /user/info at {info.url}" in out
    assert "$2.50 of $10.00 in this budget window (1d)" in out
    assert "$7.50  [###############.....] 75%" in out
    assert "resets " in out and "60 requests/min, 100,000 tokens/min" in out
    assert "active, expires " in out and "standard (key metadata), as this workspace asks" in out
    assert "alice's total: $3.10 of $20.00" in out
    assert all(r.authorization == f"Bearer {KEY}" for r in info.requests)


def test_usage_json_is_the_documented_object(cli: Cli, home: Path) -> None:
    store_key(home)
    with run_litellm_info({KEY: Account(spend=1.0, level="design-first")}) as info:
        result = cli("usage", "--json", "--gateway-url", info.url, "--enforcement-level", "standard")
    doc = json.loads(result.out)
    no_secret(result)
    assert result.code == 0 and doc["ok"] is True and doc["error"] is None
    assert set(doc) == {"schema", "ok", "exit_code", "fetched_at", "source", "key", "budget", "limits",
                        "enforcement", "user", "by_model", "notes", "error"}
    assert doc["source"] == {"name": "litellm", "url": info.url, "endpoints": ["/key/info", "/user/info"]}
    assert doc["key"]["masked"] == MASKED and doc["key"]["status"] == "active"
    assert doc["budget"] == {
        "currency": "USD", "spend": 1.0, "max_budget": 10.0, "left": 9.0, "left_fraction": 0.9,
        "duration": "1d", "resets_at": doc["budget"]["resets_at"], "exhausted": False,
    }
    assert doc["budget"]["resets_at"].endswith("T00:00:00Z")
    assert doc["limits"] == {"rpm": 60, "tpm": 100000}
    assert doc["enforcement"] == {"key_level": "design-first", "requested": "standard", "applied": "design-first", "matches": False}


def test_usage_short_is_one_line(cli: Cli, home: Path) -> None:
    store_key(home)
    with run_litellm_info({KEY: Account(spend=2.5)}) as info:
        result = cli("usage", "--short", "--gateway-url", info.url)
    assert result.code == 0 and result.out.count("\n") == 1
    assert result.out.startswith("$2.50 of $10.00 (75% left), resets in ")


def test_a_pasted_key_wins_over_the_stored_one(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_key(home, "sk-stale-key-0000000000")
    monkeypatch.setenv("LITELLM_API_KEY", KEY)
    with run_litellm_info({KEY: Account()}) as info:
        result = cli("usage", "--gateway-url", info.url)
    assert result.code == 0 and info.requests[0].authorization == f"Bearer {KEY}"


def test_a_key_file_readable_by_others_is_made_private_before_use_and_noted(cli: Cli, home: Path) -> None:
    store_key(home, mode=0o644)
    with run_litellm_info({KEY: Account()}) as info:
        result = cli("usage", "--gateway-url", info.url)
    assert result.code == 0
    assert "note: " in result.out and "was readable by others (mode 0644); it is 0600 now" in result.out
    assert stat.S_IMODE(Paths.for_home(home).key_file.stat().st_mode) == 0o600


def test_exhausted_budget_prints_usage_then_exits_12_with_the_reset_time(cli: Cli, home: Path) -> None:
    store_key(home)
    reset = (datetime.now(UTC) + timedelta(hours=5)).replace(microsecond=0)
    with run_litellm_info({KEY: Account(spend=10.2, max_budget=10.0, budget_reset_at=reset)}) as info:
        result = cli("usage", "--gateway-url", info.url)
    assert result.code == 12
    assert "$0.00  [....................] 0%" in result.out
    stamp = reset.isoformat().replace("+00:00", "Z")
    assert f"is used up ($10.20 spent of $10.00): requests are refused until it resets; it resets at {stamp} (in 4 h 59 min)" in result.err or (
        f"it resets at {stamp} (in 5 h)" in result.err
    )
    no_secret(result)


def test_exhausted_budget_as_json(cli: Cli, home: Path) -> None:
    store_key(home)
    with run_litellm_info({KEY: Account(spend=11.0, max_budget=10.0)}) as info:
        result = cli("usage", "--json", "--gateway-url", info.url)
    doc = json.loads(result.out)
    assert result.code == doc["exit_code"] == 12
    assert doc["ok"] is False and doc["budget"]["exhausted"] is True and doc["budget"]["left"] == 0.0


def test_a_budget_refusal_says_nobody_said_when_it_resets(cli: Cli, home: Path) -> None:
    store_key(home)
    with run_litellm_info({KEY: Account(spend=12.5, max_budget=10.0, budget_error=True)}) as info:
        result = cli("usage", "--gateway-url", info.url)
    assert result.code == 12 and result.out == ""
    assert "($12.50 spent of $10.00)" in result.err and "did not say when it resets" in result.err


@pytest.mark.parametrize(
    ("mode", "account", "code", "words"),
    [
        ("nodb", Account(), 14, "has no database connected"),
        ("normal", Account(expires=datetime.now(UTC) - timedelta(days=2)), 11, "Expired Key"),
    ],
)
def test_gateway_refusals_have_their_exit_codes(cli: Cli, home: Path, mode: str, account: Account, code: int, words: str) -> None:
    store_key(home)
    with run_litellm_info({KEY: account}, mode=mode) as info:
        result = cli("usage", "--gateway-url", info.url)
    assert result.code == code and words in result.err and result.err.startswith("workspace-agent: ")
    no_secret(result)


def test_unknown_key_is_refused(cli: Cli, home: Path) -> None:
    store_key(home)
    with run_litellm_info({"sk-another-workspace-000": Account()}) as info:
        result = cli("usage", "--json", "--gateway-url", info.url)
    doc = json.loads(result.out)
    assert result.code == 11 and doc["error"]["kind"] == "key_refused" and "bootstrap" in doc["error"]["message"]


def test_gateway_down_names_the_url(cli: Cli, home: Path) -> None:
    store_key(home)
    url = closed_port()
    result = cli("usage", "--gateway-url", url)
    assert result.code == 13 and f"cannot reach the gateway at {url}" in result.err


def test_gateway_slow_names_the_timeout(cli: Cli, home: Path) -> None:
    store_key(home)
    with run_litellm_info({KEY: Account()}, mode="slow", delay=3.0) as info:
        result = cli("usage", "--gateway-url", info.url, "--timeout", "0.4")
    assert result.code == 13 and "within 0.4 s (timeout)" in result.err and info.url in result.err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["usage", "models"])
def test_timeout_holds_against_a_gateway_that_drips(cli: Cli, home: Path, command: str) -> None:
    """One byte every 0.5 s used to reset the wait each time: --timeout 3 took 38 s."""
    store_key(home)
    with dripping_server(interval=0.5) as server:
        started = time.monotonic()
        result = cli(command, "--gateway-url", server.url, "--timeout", "3")
        took = time.monotonic() - started
    assert result.code == 13 and "within 3 s (timeout)" in result.err
    assert 3.0 * 0.9 <= took <= 3.0 * 1.1, took


def test_by_model_unavailable_is_one_line(cli: Cli, home: Path) -> None:
    store_key(home)
    with run_litellm_info({KEY: Account()}) as info:
        result = cli("usage", "--by-model", "--gateway-url", info.url)
    assert result.code == 0
    lines = [line for line in result.out.splitlines() if "by model" in line]
    assert len(lines) == 1 and "unavailable: the gateway offers no spend logs to this key (401" in lines[0]


def test_auto_source_is_the_provisioner_when_configured(cli: Cli, home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_key(home)
    with run_litellm_info({KEY: Account(spend=4.0)}) as info:
        monkeypatch.setenv("PROVISIONER_URL", info.url)
        result = cli("usage", "--gateway-url", closed_port())
    assert result.code == 0, result.err
    assert f"from the key provisioner /api/v1/keys/info at {info.url}" in result.out
    assert "$4.00 of $10.00" in result.out
    forced = None
    with run_litellm_info({KEY: Account(spend=4.0)}) as info2:
        forced = cli("usage", "--source", "litellm", "--gateway-url", info2.url)
    assert forced.code == 0 and "from LiteLLM" in forced.out


def test_the_teams_provisioner_standin_shape_is_understood(cli: Cli, home: Path) -> None:
    """The provisioner stand-in answers /api/v1/keys/info in /key/info's shape: both must work."""
    with run_provisioner() as prov:
        answer = httpx.post(
            prov.url + "/api/v1/keys/workspace",
            json={"workspace_id": "ws-9", "username": "bob", "enforcement_level": "design-first"},
            headers={"Authorization": f"Bearer {prov.secret}"},
        )
        key = answer.json()["key"]
        store_key(home, key)
        result = cli("usage", "--json", "--provisioner-url", prov.url, "--enforcement-level", "design-first")
    doc = json.loads(result.out)
    assert result.code == 0, result.err
    assert doc["source"]["name"] == "provisioner" and doc["source"]["endpoints"] == ["/api/v1/keys/info"]
    assert doc["key"]["alias"] == "workspace-ws-9" and doc["enforcement"]["matches"] is True
    assert doc["limits"] == {"rpm": 60, "tpm": 100000}
    assert key not in result.all


def test_ai_usage_console_script_names_itself(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {k: v for k, v in os.environ.items() if not k.startswith(("LITELLM_", "AI_", "PROVISIONER_"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(REPO), WORKSPACE_AGENT_POLICY=str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from workspace_agent.cli import ai_usage_main; sys.exit(ai_usage_main())"],
        check=False, capture_output=True, text=True, env=env, cwd=REPO, timeout=60,
    )
    assert proc.returncode == 10 and proc.stderr.startswith("ai-usage: this workspace has no AI key yet")


def test_models_gateway_down(cli: Cli, home: Path) -> None:
    store_key(home)
    url = closed_port()
    result = cli("models", "--gateway-url", url)
    assert result.code == 13 and f"cannot reach the gateway at {url}" in result.err and "AI_GATEWAY_URL" in result.err


def test_models_gateway_slow(cli: Cli, home: Path) -> None:
    store_key(home)
    with stalled_server() as url:
        result = cli("models", "--json", "--gateway-url", url, "--timeout", "0.5")
    doc = json.loads(result.out)
    assert result.code == 13 and doc["error"]["kind"] == "gateway_unreachable"
    assert f"the gateway at {url} did not answer GET /v1/models within 0.5 s (timeout)" in doc["error"]["message"]


def test_models_no_key_as_json(cli: Cli) -> None:
    result = cli("models", "--json")
    doc = json.loads(result.out)
    assert result.code == 10 and doc["schema"] == "workspace-agent.ai-models/1" and doc["error"]["kind"] == "no_key"
