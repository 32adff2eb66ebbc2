"""views: the text a developer reads for ai-usage and ai-models."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workspace_agent import data, models, usage, views

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fraction", "text"),
    [(1.0, "[" + "#" * 20 + "]"), (0.75, "[" + "#" * 15 + "." * 5 + "]"), (0.0, "[" + "." * 20 + "]"),
     (1.7, "[" + "#" * 20 + "]"), (None, "")],
)
def test_bar(fraction: float | None, text: str) -> None:
    assert views.bar(fraction) == text


def _usage(spend: float = 2.5, max_budget: float | None = 10.0, level: str = "standard", requested: str = "standard") -> usage.Usage:
    key = usage.KeyState(
        alias="workspace-ws-1", status="active", expires_at=NOW + timedelta(days=30), created_at=None,
        last_active=None, user_id="alice", models=("claude-sonnet-4-5",), rpm_limit=60, tpm_limit=100000, level=level,
    )
    budget = usage.Budget(spend, max_budget, "1d", NOW + timedelta(hours=12))
    return usage.Usage(
        "litellm", "http://litellm:4000", ["/key/info", "/user/info"], "sk-…abcd", key, budget,
        usage.enforcement_of(key, requested), user=usage.UserState("alice", 3.1, 20.0, "30d", None), fetched_at=NOW,
    )


def test_render_usage_shows_every_fact() -> None:
    text = views.render_usage(_usage(), NOW)
    lines = text.splitlines()
    assert lines[0] == "ai-usage: key sk-…abcd (workspace-ws-1), from LiteLLM /key/info + /user/info at http://litellm:4000"
    assert "  spent     $2.50 of $10.00 in this budget window (1d)" in lines
    assert "  left      $7.50  [###############.....] 75%" in lines
    assert "  resets    2026-11-28 00:00 UTC (in 12 h)" in lines
    assert "  limits    60 requests/min, 100,000 tokens/min" in lines
    assert "  key       active, expires 2026-12-27 12:00 UTC (in 30 days)" in lines
    assert "  level     standard (key metadata), as this workspace asks" in lines
    assert "  user      alice's total: $3.10 of $20.00" in lines


def test_render_usage_of_an_exhausted_budget_and_a_level_mismatch() -> None:
    text = views.render_usage(_usage(spend=12.5, level="standard", requested="design-first"), NOW)
    assert "  left      $0.00  [....................] 0%" in text
    assert "standard (key metadata) but this workspace asks for design-first" in text


def test_render_usage_without_a_limit() -> None:
    text = views.render_usage(_usage(max_budget=None), NOW)
    assert "$2.50 in this budget window (1d); no budget limit" in text and "left" not in text


def test_render_usage_by_model_lines() -> None:
    u = _usage()
    u.by_model = usage.ModelBreakdown(False, reason="the gateway offers no spend logs to this key (401: admin only)")
    assert "  by model  unavailable: the gateway offers no spend logs to this key (401: admin only)" in views.render_usage(u, NOW)
    u.by_model = usage.ModelBreakdown(True, {"a": 0.5, "b": 2.0}, "/spend/logs", NOW.date())
    assert "  by model  b $2.00, a $0.50 (/spend/logs since 2026-11-27)" in views.render_usage(u, NOW)


def test_render_usage_short_is_one_line() -> None:
    assert views.render_usage_short(_usage(), NOW) == "$2.50 of $10.00 (75% left), resets in 12 h, level standard\n"


def _listing(check: models.CheckResult | None = None, requested: str = "standard") -> models.Models:
    return models.Models(
        "http://litellm:4000", "sk-…abcd", "claude-sonnet-4-5", requested,
        [models.ModelInfo("claude-sonnet-4-5", "chat", 128000, 16384, "openai"),
         models.ModelInfo("claude-haiku-4-5", "chat", None, None, None)],
        [models.ToolUse("roo-code", "model", "claude-sonnet-4-5"), models.ToolUse("opencode", "model", "claude-sonnet-4-5"),
         models.ToolUse("opencode", "small_model", "claude-haiku-4-5")],
        check,
    )


def test_render_models_marks_default_tools_and_limits() -> None:
    lines = views.render_models(_listing()).splitlines()
    assert lines[0].startswith("ai-models: 2 models for key sk-…abcd at http://litellm:4000")
    assert lines[1].startswith("  * claude-sonnet-4-5  context 128,000, output 16,384")
    assert lines[1].endswith("Roo Code, OpenCode")
    assert lines[2].startswith("    claude-haiku-4-5   limits not given") and lines[2].endswith("OpenCode (small model)")
    assert "`ai-models --check` shows what the gateway applies" in lines[3]


def test_render_check_variants() -> None:
    sha = data.prompt_sha256("standard")
    same = models.CheckResult("claude-sonnet-4-5", 200, 123.4, "ok", models.parse_mark(f"standard; sha256={sha}"))
    text = views.render_check(_listing(same))
    assert text.startswith("check: claude-sonnet-4-5 answered in 123 ms; the gateway prepended the standard prompt")
    assert "same bytes as this workspace's prompts/standard.md" in text
    other = models.CheckResult("m", 200, 5, None, models.parse_mark("standard; sha256=" + "0" * 64))
    assert "differs from this workspace's prompts/standard.md" in views.render_check(_listing(other))
    absent = models.CheckResult("m", 200, 5, None, models.parse_mark(None))
    assert "enforcement hook is not installed" in views.render_check(_listing(absent))
    mismatch = models.CheckResult("m", 200, 5, None, models.parse_mark(f"standard; sha256={sha}"))
    assert "this workspace asks for design-first" in views.render_check(_listing(mismatch, requested="design-first"))
    fallback = models.CheckResult("m", 200, 5, None, models.parse_mark(f"design-first; sha256={data.prompt_sha256('design-first')}; fallback-from=paranoid"))
    assert "'paranoid' is unknown to the gateway, which fell back to design-first" in views.render_check(_listing(fallback))
    unrestricted = models.CheckResult("m", 200, 5, None, models.parse_mark("unrestricted"))
    assert "level unrestricted: no prompt prepended" in views.render_check(_listing(unrestricted, requested="unrestricted"))
