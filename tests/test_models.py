"""models: /v1/models → ModelInfo, who uses which model, and the enforcement header (pure parts).

The live /v1/models and --check paths run against the real LiteLLM proxy in test_litellm_real.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from workspace_agent import data, models
from workspace_agent.config import load_config
from workspace_agent.desired import build_desired


def _desired(home: Path, **flags: str) -> object:
    config = load_config({"home": str(home), **flags}, {}, {})
    return build_desired(config, {})


def test_parse_models_keeps_limits_and_skips_junk() -> None:
    body = {
        "object": "list",
        "data": [
            {"id": "claude-sonnet-4-5", "object": "model", "owned_by": "openai", "mode": "chat",
             "max_input_tokens": 128000, "max_output_tokens": 16384},
            {"id": "bare"},
            {"id": ""},
            "junk",
            {"id": "weird", "max_input_tokens": "lots", "max_output_tokens": True},
        ],
    }
    found = models.parse_models(body)
    assert found == [
        models.ModelInfo("claude-sonnet-4-5", "chat", 128000, 16384, "openai"),
        models.ModelInfo("bare", None, None, None, None),
        models.ModelInfo("weird", None, None, None, None),
    ]
    assert models.parse_models({"object": "list"}) is None


@pytest.mark.parametrize(
    ("assistant", "expected"),
    [
        ("both", ["roo-code", "zoo-code", "opencode", "opencode:small_model"]),
        ("roo-code", ["roo-code", "zoo-code"]),
        ("zoo-code", ["zoo-code"]),
        ("opencode", ["opencode", "opencode:small_model"]),
        ("claude-code", ["claude-code", "claude-code:small_model"]),
        ("all", ["roo-code", "zoo-code", "opencode", "opencode:small_model", "claude-code", "claude-code:small_model"]),
        ("none", []),
    ],
)
def test_tool_uses_follow_the_desired_state(home: Path, assistant: str, expected: list[str]) -> None:
    uses = models.tool_uses(_desired(home, ai_assistant=assistant, model="claude-opus"))  # type: ignore[arg-type]
    assert [u.to_json() for u in uses] == expected
    models_used = {u.to_json(): u.model for u in uses}
    for tool in ("roo-code", "zoo-code", "claude-code"):
        if tool in models_used:
            assert models_used[tool] == "claude-opus-4"
    if "claude-code:small_model" in models_used:  # Claude Code's `haiku` alias (settings/clients.toml)
        assert models_used["claude-code:small_model"] == "claude-haiku-4-5"
    if "opencode:small_model" in models_used:
        assert models_used["opencode:small_model"] == "claude-haiku-4-5"


def test_missing_lists_tools_whose_model_the_key_lacks(home: Path) -> None:
    desired = _desired(home)
    listing = models.Models(
        "http://gw", "sk-…abcd", "claude-sonnet-4-5", "standard",
        [models.ModelInfo("claude-haiku-4-5", "chat", None, None, None)], models.tool_uses(desired),  # type: ignore[arg-type]
    )
    tools = ("roo-code", "zoo-code", "opencode")
    assert [(u.tool, u.model) for u in listing.missing()] == [(t, "claude-sonnet-4-5") for t in tools]
    doc = listing.to_json()
    assert doc["models"][0]["used_by"] == ["opencode:small_model"] and doc["models"][0]["default"] is False
    assert doc["missing"] == [{"model": "claude-sonnet-4-5", "used_by": t} for t in tools]


def test_parse_mark_of_an_applied_prompt() -> None:
    sha = data.prompt_sha256("design-first")
    mark = models.parse_mark(f"design-first; sha256={sha}")
    assert (mark.applied, mark.level, mark.sha256, mark.fallback_from) == (True, "design-first", sha, None)
    assert mark.same_prompt is True


def test_parse_mark_of_a_different_prompt_version() -> None:
    mark = models.parse_mark("standard; sha256=" + "0" * 64)
    assert mark.level == "standard" and mark.same_prompt is False


def test_parse_mark_of_a_fallback() -> None:
    sha = data.prompt_sha256("design-first")
    mark = models.parse_mark(f"design-first; sha256={sha}; fallback-from=paranoid")
    assert mark.fallback_from == "paranoid" and mark.same_prompt is True


def test_parse_mark_of_unrestricted_and_of_nothing() -> None:
    unrestricted = models.parse_mark("unrestricted")
    assert (unrestricted.applied, unrestricted.sha256, unrestricted.same_prompt) == (True, None, True)
    absent = models.parse_mark(None)
    assert (absent.applied, absent.level, absent.same_prompt) == (False, None, None)


@pytest.mark.parametrize("header", ["", "Design First; sha256=zz", "<script>; sha256=1"])
def test_parse_mark_of_garbage_is_not_understood(header: str) -> None:
    mark = models.parse_mark(header)
    assert mark.applied and mark.level is None and mark.sha256 is None and mark.same_prompt is None


def test_parse_mark_of_a_level_this_workspace_does_not_ship() -> None:
    mark = models.parse_mark("strict; sha256=" + "a" * 64)
    assert mark.level == "strict" and mark.same_prompt is None
