"""Where the key comes from, and one rule for a stored key file that others can read:
bootstrap sets it back to 0600 and says so; plan/check (which never write) say how to fix it and
show the mode as drift; the self-service commands make it private before sending it."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.standins.stall import closed_port
from workspace_agent.paths import Paths

STORED = "sk-stored-Jd83nQm2Lw0pXe"


def _store(home: Path, mode: int) -> Path:
    path = Paths.for_home(home).key_file
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STORED + "\n")
    path.chmod(mode)
    return path


def _rules(out: str) -> dict[str, dict]:
    return {r["rule_id"]: r for r in json.loads(out)["rules"]}


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_check_reports_a_readable_key_file_and_leaves_it(home: Path, cli, mode: int) -> None:
    path = _store(home, mode)
    result = cli("check", "--json")
    summary = json.loads(result.out)
    assert f"~/.config/workspace-agent/litellm.key is readable by others (mode {mode:04o}); " \
           "`workspace-agent bootstrap` sets it back to 0600" in summary["notes"]
    key_rule = _rules(result.out)["key.file"]
    assert (key_rule["state"], key_rule["before"], key_rule["after"]) == ("drift", f"mode {mode:04o}", "mode 0600")
    assert stat.S_IMODE(path.stat().st_mode) == mode, "check never writes"
    assert STORED not in result.all


def test_bootstrap_without_the_provisioner_uses_the_stored_key_and_makes_it_private(
    home: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _store(home, 0o644)
    for name, value in {"CODER_WORKSPACE_ID": "ws-1", "CODER_WORKSPACE_OWNER": "alice",
                        "PROVISIONER_SECRET": "s3cret-value-x", "WORKSPACE_AGENT_PROVISION_DEADLINE": "0.5"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PROVISIONER_URL", closed_port())
    result = cli("bootstrap", "--json")
    summary = json.loads(result.out)
    assert summary["key"]["source"] == "stored"
    assert any("using the key stored by an earlier start" in n for n in summary["notes"])
    assert "~/.config/workspace-agent/litellm.key is readable by others (mode 0644); this run sets it back to 0600" \
        in summary["notes"]
    assert _rules(result.out)["key.file"]["state"] == "corrected"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text() == STORED + "\n"


def test_bootstrap_without_identity_keeps_the_mode_note(home: Path, cli) -> None:
    path = _store(home, 0o660)
    summary = json.loads(cli("bootstrap", "--json").out)
    assert summary["key"]["source"] == "stored"
    assert any(n.startswith("cannot ask the key provisioner") for n in summary["notes"])
    assert any("readable by others (mode 0660); this run sets it back to 0600" in n for n in summary["notes"])
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_private_key_file_says_nothing(home: Path, cli) -> None:
    _store(home, 0o600)
    summary = json.loads(cli("check", "--json").out)
    assert not any("readable" in n for n in summary["notes"])
    assert _rules(json.dumps(summary))["key.file"]["state"] == "compliant"


def test_a_planted_key_level_file_reaches_no_terminal_unsanitised(home: Path, cli) -> None:
    """key-level.json lives in the home (the agent may run as root over it, issue 14): what it
    says about the stored key (level, generation, rotated_at) is shown by check and status, so a
    planted escape sequence or a 4000-digit generation must not reach the terminal as it is."""
    from workspace_agent.keylevel import key_id

    _store(home, 0o600)
    huge = int("9" * 4000)
    planted = {"key_id": key_id(STORED), "enforcement_level": "design-first\x1b]0;owned\x07\x1b[2J",
               "generation": huge, "rotated_at": "2026-12-06\x1b[31m red\x1b[0m"}
    cache = Paths.for_home(home).key_level_file
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(planted))
    cache.chmod(0o600)
    for args in (("check",), ("status",), ("check", "--json")):
        result = cli(*args)
        assert "\x1b" not in result.all and "\x07" not in result.all, (args, result.all)
        assert "\\u001b" not in result.all and "9" * 50 not in result.all, (args, result.all)
