"""Which key generation the agent uses (issue 18): the provisioner's answer parsed (hostile values
dropped), remembered beside the key-level cache by the key's hash, shown by `check`/`status`
offline and by ai-usage from the key's metadata."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CliResult
from workspace_agent import keylevel
from workspace_agent.keysource import generation_words
from workspace_agent.paths import Paths
from workspace_agent.provisioner import ProvisionedKey, _parse_key
from workspace_agent.status import long_text
from workspace_agent.usage import key_state

KEY = "sk-gen-Ur83mQ2Lw0pXeZ4k"


def parse(body: dict[str, Any]) -> ProvisionedKey:
    got = _parse_key(201, "application/json", json.dumps({"key": KEY, **body}).encode(), False, 65536, "x")
    assert isinstance(got, ProvisionedKey), got
    return got


def test_the_answer_of_the_hardened_provisioner_is_read() -> None:
    got = parse({"reused": False, "generation": 2, "level": "design-first", "rotated": True,
                 "rotated_at": "2026-12-06T11:00:00+00:00"})
    assert (got.generation, got.level, got.rotated, got.rotated_at) == (2, "design-first", True, "2026-12-06T11:00:00+00:00")


@pytest.mark.parametrize("generation", [True, -1, 1.5, "2", 10**9, None])
def test_odd_generations_are_dropped(generation: object) -> None:
    got = parse({"generation": generation, "level": "x\ny" * 50, "rotated": "yes"})
    assert got.generation is None and got.rotated is False
    assert got.level is not None and "\n" not in got.level and len(got.level) <= 40


def test_the_platforms_answer_has_no_generation() -> None:
    got = parse({"reused": True})
    assert (got.generation, got.level, got.rotated, got.rotated_at) == (None, None, False, None)


@pytest.mark.parametrize(
    ("generation", "rotated_at", "level", "words"),
    [
        (2, "2026-12-06T11:00:00+00:00", "design-first", "generation 2, rotated 2026-12-06 for level design-first"),
        (0, None, "standard", "generation 0, level standard"),
        (3, None, None, "generation 3"),
        (None, "2026-12-06", "standard", ""),
        (True, None, None, ""),
    ],
)
def test_generation_words(generation: object, rotated_at: object, level: object, words: str) -> None:
    assert generation_words(generation, rotated_at, level) == words


def test_remembered_by_the_keys_hash_and_kept_by_a_level_refresh(home: Path) -> None:
    paths = Paths.for_home(home)
    assert keylevel.remember(paths, KEY, level="design-first", generation=2, rotated_at="2026-12-06T11:00:00+00:00") is None
    record = keylevel.cached_record(paths, KEY)
    assert (record["generation"], record["enforcement_level"]) == (2, "design-first")
    assert keylevel.cached_record(paths, "sk-another-key-000000") == {}
    assert KEY not in paths.key_level_file.read_text()
    assert paths.key_level_file.stat().st_mode & 0o777 == 0o600


def test_check_and_status_show_the_stored_keys_generation_offline(home: Path, cli: Any) -> None:
    paths = Paths.for_home(home)
    paths.key_file.parent.mkdir(parents=True, exist_ok=True)
    paths.key_file.write_text(KEY + "\n")
    paths.key_file.chmod(0o600)
    keylevel.remember(paths, KEY, level="design-first", generation=2, rotated_at="2026-12-06T11:00:00+00:00")
    result: CliResult = cli("check", "--json", "--enforcement-level", "design-first")
    key = json.loads(result.out)["key"]
    assert (key["source"], key["generation"], key["level"], key["rotated_at"]) == (
        "stored", 2, "design-first", "2026-12-06T11:00:00+00:00")
    status = cli("status")
    assert "generation 2, rotated 2026-12-06 for level design-first" in status.out, status.all
    assert KEY not in status.all + result.all


def test_long_status_without_a_generation_is_unchanged() -> None:
    data = {"last_run": {"counts": {"total": 1, "compliant": 1}, "key": {"masked": "sk-…abcd", "source": "pasted"}},
            "report": {}}
    text = long_text(data, datetime(2026, 12, 6, tzinfo=UTC))
    assert "key: sk-…abcd (pasted); key ok\n" in text


def test_ai_usage_reads_the_generation_from_the_keys_metadata() -> None:
    info = {"status": "active", "metadata": {"enforcement_level": "design-first", "generation": 1,
                                              "rotated_at": "2026-12-06T11:00:00+00:00"}}
    state = key_state(info, datetime(2026, 12, 6, tzinfo=UTC))
    assert (state.generation, state.rotated_at, state.level) == (1, "2026-12-06T11:00:00+00:00", "design-first")
    assert key_state({"metadata": {"generation": "1"}}, datetime(2026, 12, 6, tzinfo=UTC)).generation is None
