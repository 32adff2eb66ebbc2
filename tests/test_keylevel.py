"""The key's stored enforcement level: fetched from the provisioner (stand-in), cached per key,
shown by plan/check/bootstrap as the report-only rule `key.enforcement-level`."""

from __future__ import annotations

import json
import socket
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CliResult
from tests.standins.provisioner import run_provisioner
from workspace_agent import keylevel
from workspace_agent.config import load_config
from workspace_agent.desired import build_desired
from workspace_agent.keysource import KeyResolution
from workspace_agent.paths import Paths
from workspace_agent.plan import build_plan
from workspace_agent.provisioner import KeyRequest, fetch_key

# Left out of `scripts/test --fast`: each test talks to a provisioner stand-in over loopback.
pytestmark = pytest.mark.slow


def _issue(url: str, secret: str, level: str) -> str:
    """A key the provisioner stand-in made for a workspace, through the agent's real client."""
    return fetch_key(url, secret, KeyRequest("ws-kl", "carol", enforcement_level=level), deadline=5).key


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"info": {"metadata": {"enforcement_level": "design-first"}}}, ("design-first", "")),
        ({"info": {"metadata": {}}}, (None, "its answer has no info.metadata.enforcement_level")),
        ({"info": {"metadata": {"enforcement_level": 3}}}, (None, "its answer has no info.metadata.enforcement_level")),
        ({"info": {"metadata": {"enforcement_level": "x" * 51}}}, (None, "its answer has no info.metadata.enforcement_level")),
        ({"info": None}, (None, "its answer has no info.metadata.enforcement_level")),
        ([1, 2], (None, "its answer has no info.metadata.enforcement_level")),
    ],
)
def test_level_from_key_info(body: object, expected: tuple[str | None, str]) -> None:
    assert keylevel.level_from_info(body) == expected


def test_fetch_reads_the_level_stored_on_the_key() -> None:
    with run_provisioner() as prov:
        key = _issue(prov.url, prov.secret, "design-first")
        assert keylevel.fetch_level(prov.url, key) == ("design-first", "")
        assert prov.requests[-1].headers["authorization"] == f"Bearer {key}"
        assert keylevel.fetch_level(prov.url, "sk-unknown-000000000000") == (None, "it answered HTTP 401")


def test_fetch_gives_up_quietly_when_the_provisioner_is_away_or_slow() -> None:
    level, problem = keylevel.fetch_level(f"http://127.0.0.1:{_closed_port()}", "sk-some-key-0000000000")
    assert level is None and problem.startswith("cannot connect")
    with run_provisioner(mode="slow", delay=5.0) as prov:
        assert keylevel.fetch_level(prov.url, "sk-some-key-0000000000", timeout=0.3) == (None, "no answer within 0.3 s")


def test_refresh_caches_per_key_without_storing_the_key(home: Path) -> None:
    paths = Paths.for_home(home)
    with run_provisioner() as prov:
        key = _issue(prov.url, prov.secret, "standard")
        assert keylevel.refresh(paths, prov.url, key) == ("standard", None)
    text = paths.key_level_file.read_text()
    assert key not in text and json.loads(text)["enforcement_level"] == "standard"
    assert stat.S_IMODE(paths.key_level_file.stat().st_mode) == 0o600
    assert keylevel.cached_level(paths, key) == "standard"
    assert keylevel.cached_level(paths, key + "x") is None  # a rotated key knows nothing yet

    level, note = keylevel.refresh(paths, f"http://127.0.0.1:{_closed_port()}", key)
    assert level is None and note is not None and "could not learn the key's enforcement level" in note
    assert keylevel.cached_level(paths, key) == "standard"  # a failed fetch keeps what was known


def _rule_results(home: Path, level: str, key: str) -> list[tuple[str, str, str | None, str | None, str | None]]:
    config = load_config({"enforcement_level": level}, {"HOME": str(home)}, {})
    desired = build_desired(config, {}, Paths.for_home(home))
    plan = build_plan(keylevel.rules(desired, KeyResolution(key, "stored")))
    return [(r.rule_id, r.state, r.before, r.after, r.message) for r in plan.results]


def test_the_rule_exists_only_when_the_level_is_known_and_drifts_on_a_mismatch(home: Path) -> None:
    paths = Paths.for_home(home)
    with run_provisioner() as prov:
        key = _issue(prov.url, prov.secret, "standard")
        assert _rule_results(home, "design-first", key) == []  # nothing known: no guess
        keylevel.refresh(paths, prov.url, key)
    assert _rule_results(home, "standard", key) == [("key.enforcement-level", "compliant", "standard", "standard", None)]
    [(rule_id, state, before, after, message)] = _rule_results(home, "design-first", key)
    assert (rule_id, state, before, after) == ("key.enforcement-level", "drift", "standard", "design-first")
    assert message is not None and "anti-downgrade" in message and "rotate" in message
    assert _rule_results(home, "design-first", None) == []  # type: ignore[arg-type]


def test_check_shows_the_mismatch_from_the_cache_without_the_network(
    cli: Callable[..., CliResult], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with run_provisioner() as prov:
        monkeypatch.setenv("CODER_WORKSPACE_ID", "ws-kl")
        monkeypatch.setenv("CODER_WORKSPACE_OWNER", "carol")
        monkeypatch.setenv("PROVISIONER_URL", prov.url)
        monkeypatch.setenv("PROVISIONER_SECRET", prov.secret)
        assert cli("bootstrap", "-q").code == 0  # key made with "standard"
        key = prov.keys["ws-kl"]
        keylevel.refresh(Paths.for_home(home), prov.url, key)
    monkeypatch.setenv("PROVISIONER_URL", f"http://127.0.0.1:{_closed_port()}")
    monkeypatch.setenv("WORKSPACE_AGENT_PROVISION_DEADLINE", "0.5")  # fall back to the stored key quickly
    monkeypatch.setenv("ENFORCEMENT_LEVEL", "design-first")
    assert cli("bootstrap", "-q").code == 0  # the stored key is used; the level cannot change on it
    result = cli("check", "--no-diff")
    assert result.code == 2
    line = next(line for line in result.out.splitlines() if "key.enforcement-level" in line)
    assert "drift" in line and "standard → design-first" in line and "rotate" in line
    assert key not in result.all


def test_remember_writes_only_what_changed(home: Path) -> None:
    """A start that hears the same generation again leaves the record as it is (bootstrap twice:
    the second changes nothing); a new generation or another key is written."""
    paths = Paths.for_home(home)
    key = "sk-remember-abcdefghijklmnop"
    assert keylevel.remember(paths, key, level="standard", generation=1, rotated_at=None) is None
    first = paths.key_level_file.stat()
    assert keylevel.remember(paths, key, level="standard", generation=1, rotated_at=None) is None
    assert paths.key_level_file.stat().st_ino == first.st_ino and paths.key_level_file.stat().st_mtime_ns == first.st_mtime_ns
    keylevel.remember(paths, key, level="design-first", generation=2, rotated_at="2026-12-06T12:00:00+00:00")
    assert keylevel.cached_record(paths, key)["generation"] == 2
    keylevel.remember(paths, "sk-another-key-abcdefghijkl", level="design-first", generation=2,
                      rotated_at="2026-12-06T12:00:00+00:00")
    assert keylevel.cached_record(paths, key) == {}
