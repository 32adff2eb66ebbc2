"""usage: LiteLLM's bodies → values (tables), and fetching from each source via a loopback stand-in."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from tests.standins.litellm_info import Account, run_litellm_info
from tests.standins.stall import closed_port
from workspace_agent import gateway, usage
from workspace_agent.errors import (
    EXIT_BUDGET,
    EXIT_KEY_REFUSED,
    EXIT_NO_TRACKING,
    EXIT_UNREACHABLE,
    AgentError,
)

KEY = "sk-usage-test-7Hq2Lx9Wm3Zp"
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T00:00:00+00:00", datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-11-28T00:00:00Z", datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-11-28T00:00:00.123456", datetime(2026, 11, 28, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2026-11-28T02:00:00+02:00", datetime(2026, 11, 28, tzinfo=UTC)),
        ("tomorrow", None),
        ("", None),
        (None, None),
        (12, None),
    ],
)
def test_parse_time(text: object, expected: datetime | None) -> None:
    assert usage.parse_time(text) == expected


def _row(**overrides: object) -> dict:
    row = {
        "status": "active",
        "key_alias": "workspace-ws-1",
        "spend": 2.5,
        "max_budget": 10.0,
        "budget_duration": "1d",
        "budget_reset_at": "2026-11-28T00:00:00+00:00",
        "models": ["claude-sonnet-4-5"],
        "tpm_limit": 100000,
        "rpm_limit": 60,
        "metadata": {"enforcement_level": "design-first"},
        "blocked": None,
        "expires": "2026-12-27T00:00:00+00:00",
        "user_id": "alice",
    }
    row.update(overrides)
    return row


def test_key_state_and_budget_of_a_normal_row() -> None:
    state = usage.key_state(_row(), NOW)
    budget = usage.budget_of(_row())
    assert state.status == "active" and state.alias == "workspace-ws-1"
    assert (state.rpm_limit, state.tpm_limit, state.level) == (60, 100000, "design-first")
    assert state.models == ("claude-sonnet-4-5",)
    assert (budget.spend, budget.max_budget, budget.left, budget.left_fraction) == (2.5, 10.0, 7.5, 0.75)
    assert budget.resets_at == datetime(2026, 11, 28, tzinfo=UTC) and not budget.exhausted


@pytest.mark.parametrize(
    ("overrides", "status"),
    [
        ({"expires": "2026-11-01T00:00:00Z"}, "expired"),
        ({"blocked": True}, "blocked"),
        ({"status": "revoked"}, "revoked"),
        ({"status": None, "expires": None}, "active"),
    ],
)
def test_key_status(overrides: dict, status: str) -> None:
    assert usage.key_state(_row(**overrides), NOW).status == status


@pytest.mark.parametrize(
    ("spend", "max_budget", "left", "fraction", "exhausted"),
    [
        (10.0, 10.0, 0.0, 0.0, True),
        (12.5, 10.0, 0.0, 0.0, True),
        (0.0, 10.0, 10.0, 1.0, False),
        (3.0, None, None, None, False),
        ("2.5", "10", 7.5, 0.75, False),  # numbers as strings, as some proxies send them
        (None, 10.0, None, None, False),
    ],
)
def test_budget_arithmetic(spend: object, max_budget: object, left: float | None, fraction: float | None, exhausted: bool) -> None:
    budget = usage.budget_of({"spend": spend, "max_budget": max_budget})
    assert (budget.left, budget.left_fraction, budget.exhausted) == (left, fraction, exhausted)


def test_own_key_row_is_found_by_hash_then_by_name() -> None:
    mine = {"token": usage.token_hash(KEY), "key_name": "sk-...Zp", "spend": 1.0}
    other = {"token": usage.token_hash("sk-other"), "key_name": "sk-...zzzz", "spend": 9.0}
    assert usage.own_key_row({"keys": [other, mine]}, KEY) is mine
    by_name = {"key_name": f"sk-...{KEY[-4:]}", "spend": 2.0}
    assert usage.own_key_row({"keys": [other, by_name]}, KEY) is by_name
    assert usage.own_key_row({"keys": [other, by_name, dict(by_name)]}, KEY) is None  # ambiguous
    assert usage.own_key_row({"keys": [other]}, KEY) is None


def test_key_info_of_understands_both_shapes() -> None:
    assert usage.key_info_of({"key": "x", "info": {"spend": 1}}, KEY) == {"spend": 1}
    row = {"token": usage.token_hash(KEY), "spend": 2}
    assert usage.key_info_of({"user_id": "alice", "user_info": {}, "keys": [row]}, KEY) == row
    assert usage.key_info_of({"status": "ok"}, KEY) is None


@pytest.mark.parametrize(
    ("key_level", "requested", "applied", "matches", "words"),
    [
        ("standard", "standard", "standard", True, "as this workspace asks"),
        ("standard", "design-first", "standard", False, "rotate the key"),
        ("paranoid", "standard", "design-first", False, "is not a level"),
        (None, "standard", "design-first", False, "no enforcement_level"),
    ],
)
def test_enforcement_against_what_the_workspace_asks(
    key_level: str | None, requested: str, applied: str, matches: bool, words: str
) -> None:
    key = usage.key_state(_row(metadata={"enforcement_level": key_level} if key_level else {}), NOW)
    result = usage.enforcement_of(key, requested)
    assert (result.key_level, result.applied, result.matches) == (key_level, applied, matches)
    assert words in result.explain()


def test_enforcement_unknown_without_key_info() -> None:
    result = usage.enforcement_of(None, "standard")
    assert (result.applied, result.matches) == (None, None) and "unknown" in result.explain()


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1d", timedelta(days=1)), ("12h", timedelta(hours=12)), ("30s", timedelta(seconds=30)),
     ("1mo", timedelta(days=30)), ("2w", timedelta(days=14)), ("daily", None), (None, None)],
)
def test_duration_of(text: str | None, expected: timedelta | None) -> None:
    assert usage.duration_of(text) == expected


def test_window_start() -> None:
    weekly = usage.Budget(1.0, 10.0, "7d", datetime(2026, 11, 30, tzinfo=UTC))
    assert usage.window_start(weekly, NOW) == date(2026, 11, 23)
    assert usage.window_start(usage.Budget(1.0, 10.0, None, None), NOW) == NOW.date()


def test_sum_spend_logs_from_daily_summaries_and_raw_rows() -> None:
    summaries = [
        {"startTime": "2026-11-26", "spend": 1.0, "models": {"claude-sonnet-4-5": 0.75, "claude-haiku-4-5": 0.25}},
        {"startTime": "2026-11-27", "spend": 0.5, "models": {"claude-sonnet-4-5": 0.5}},
    ]
    assert usage.sum_spend_logs(summaries) == {"claude-sonnet-4-5": 1.25, "claude-haiku-4-5": 0.25}
    rows = [{"model": "a", "spend": 0.1}, {"model": "a", "spend": 0.2}, {"model": "b", "spend": "x"}]
    assert usage.sum_spend_logs(rows) == pytest.approx({"a": 0.3})
    assert usage.sum_spend_logs({"error": "x"}) is None


def test_spend_logs_are_labelled_with_the_model_the_user_chose() -> None:
    """A raw /spend/logs row names the provider route in `model` and the user's choice in
    `model_group`: ai-usage --by-model shows the latter."""
    rows = [
        {"model": "openai/claude-sonnet-4-5", "model_group": "claude-sonnet", "spend": 0.00002},
        {"model": "openai/claude-sonnet-4-5", "model_group": "claude-sonnet", "spend": 0.00003},
        {"model": "openai/claude-haiku-4-5", "model_group": "claude-haiku", "spend": 0.00001},
    ]
    assert usage.sum_spend_logs(rows) == pytest.approx({"claude-sonnet": 0.00005, "claude-haiku": 0.00001})


# ---------------------------------------------------------------------------------------------
# Fetching from a stand-in


def _sources(url: str, provisioner_url: str | None = None, timeout: float = 5.0) -> usage.Sources:
    provisioner = None
    if provisioner_url:
        provisioner = gateway.Endpoint(provisioner_url, KEY, timeout, "the key provisioner", "PROVISIONER_URL")
    return usage.Sources(gateway.Endpoint(url, KEY, timeout), provisioner)


def test_litellm_source_reads_key_and_user_info() -> None:
    account = Account(spend=2.5, max_budget=10.0, level="standard", models=["claude-sonnet-4-5"])
    with run_litellm_info({KEY: account}) as info:
        result = usage.fetch_usage(_sources(info.url), "litellm", "standard")
    assert [r.path for r in info.requests] == ["/key/info", "/user/info"]
    assert (result.source, result.endpoints) == ("litellm", ["/key/info", "/user/info"])
    assert result.budget.left == 7.5 and result.budget.duration == "1d"
    assert result.key is not None and result.key.rpm_limit == 60 and result.key.models == ("claude-sonnet-4-5",)
    assert result.enforcement.matches is True
    assert result.user is not None and (result.user.user_id, result.user.spend, result.user.max_budget) == ("alice", 3.1, 20.0)
    assert result.by_model is None  # not asked, and the key has no model_spend
    doc = result.to_json()
    assert doc["budget"]["left"] == 7.5 and doc["key"]["masked"] == "sk-…m3Zp"
    assert KEY not in str(doc)


def test_provisioner_source_understands_its_user_info_pass_through() -> None:
    with run_litellm_info({KEY: Account(spend=4.0, max_budget=10.0, level="design-first")}) as info:
        result = usage.fetch_usage(_sources(closed_port(), info.url), "provisioner", "standard")
    assert [r.path for r in info.requests] == ["/api/v1/keys/info"]
    assert result.source == "provisioner" and result.source_url == info.url
    assert result.budget.spend == 4.0  # this key's row, not the user's other key (0.6) nor the user total
    assert result.enforcement.key_level == "design-first" and result.enforcement.matches is False
    assert result.user is not None and result.user.spend == 3.1


def test_provisioner_source_needs_a_provisioner_url() -> None:
    with pytest.raises(AgentError, match="PROVISIONER_URL"):
        usage.fetch_usage(_sources("http://127.0.0.1:9"), "provisioner", "standard")


def test_a_user_that_does_not_exist_is_a_note() -> None:
    with run_litellm_info({KEY: Account(user_id=None)}) as info:
        result = usage.fetch_usage(_sources(info.url), "litellm", "standard")
    assert result.user is None and result.endpoints == ["/key/info"]
    assert any("belongs to no LiteLLM user" in n for n in result.notes)


def test_by_model_from_the_keys_model_spend() -> None:
    account = Account(model_spend={"claude-sonnet-4-5": 2.0, "claude-haiku-4-5": 0.5})
    with run_litellm_info({KEY: account}) as info:
        result = usage.fetch_usage(_sources(info.url), "litellm", "standard", by_model=True)
    assert result.by_model == usage.ModelBreakdown(True, {"claude-sonnet-4-5": 2.0, "claude-haiku-4-5": 0.5}, "key model_spend")
    assert "/spend/logs" not in [r.path for r in info.requests]


def test_by_model_from_spend_logs_sends_the_key_hash_never_the_key() -> None:
    logs = [{"startTime": "2026-11-27", "spend": 0.9, "models": {"claude-sonnet-4-5": 0.9}}]
    with run_litellm_info({KEY: Account(spend_logs=logs)}) as info:
        result = usage.fetch_usage(_sources(info.url), "litellm", "standard", by_model=True, now=lambda: NOW)
    asked = next(r for r in info.requests if r.path == "/spend/logs")
    assert asked.query["api_key"] == [usage.token_hash(KEY)]
    assert asked.query["end_date"] == ["2026-11-28"] and asked.query["start_date"][0] <= "2026-11-27"
    assert result.by_model is not None and result.by_model.available
    assert result.by_model.spend == {"claude-sonnet-4-5": 0.9} and result.by_model.source == "/spend/logs"


def test_by_model_refused_to_a_non_admin_key_is_one_reason_not_a_failure() -> None:
    with run_litellm_info({KEY: Account(spend_logs=None)}) as info:
        result = usage.fetch_usage(_sources(info.url), "litellm", "standard", by_model=True)
    assert result.by_model is not None and not result.by_model.available
    assert result.by_model.reason is not None and "offers no spend logs to this key (401" in result.by_model.reason
    assert result.budget.spend == 0.0  # the rest of the answer is intact


def test_no_database_is_its_own_error() -> None:
    with run_litellm_info({KEY: Account()}, mode="nodb") as info, pytest.raises(AgentError) as caught:
        usage.fetch_usage(_sources(info.url), "litellm", "standard")
    assert caught.value.exit_code == EXIT_NO_TRACKING
    assert "Database not connected" in caught.value.message and info.url in caught.value.message


def test_expired_and_unknown_keys_are_refused() -> None:
    expired = Account(expires=datetime.now(UTC) - timedelta(days=1))
    with run_litellm_info({KEY: expired}) as info:
        with pytest.raises(AgentError) as caught:
            usage.fetch_usage(_sources(info.url), "litellm", "standard")
        assert caught.value.exit_code == EXIT_KEY_REFUSED and "Expired Key" in caught.value.message
    with run_litellm_info({"sk-someone-else-000000": Account()}) as info:
        with pytest.raises(AgentError) as caught:
            usage.fetch_usage(_sources(info.url), "litellm", "standard")
        assert caught.value.exit_code == EXIT_KEY_REFUSED and "bootstrap" in caught.value.message


def test_budget_refusal_raises_budget_exhausted() -> None:
    with run_litellm_info({KEY: Account(spend=12.5, max_budget=10.0, budget_error=True)}) as info, pytest.raises(
        gateway.BudgetExhausted
    ) as caught:
        usage.fetch_usage(_sources(info.url), "litellm", "standard")
    assert caught.value.exit_code == EXIT_BUDGET and caught.value.spent == 12.5


def test_slow_source_times_out() -> None:
    with run_litellm_info({KEY: Account()}, mode="slow", delay=3.0) as info, pytest.raises(AgentError) as caught:
        usage.fetch_usage(_sources(info.url, timeout=0.3), "litellm", "standard")
    assert caught.value.exit_code == EXIT_UNREACHABLE and "within 0.3 s" in caught.value.message


def test_budget_message_says_when_it_resets_or_that_nobody_said() -> None:
    exc = gateway.BudgetExhausted("the budget of key sk-…m3Zp is used up ($12.50 spent of $10.00): requests are refused until it resets", 12.5, 10.0)
    known = usage.budget_message(exc, None, NOW + timedelta(hours=12), NOW, "sk-…m3Zp")
    assert "it resets at 2026-11-28T00:00:00Z (in 12 h)" in known
    unknown = usage.budget_message(exc, None, None, NOW, "sk-…m3Zp")
    assert "did not say when it resets" in unknown
    budget = usage.Budget(10.0, 10.0, "1d", NOW + timedelta(minutes=90))
    assert "($10.00 spent of $10.00)" in usage.budget_message(None, budget, budget.resets_at, NOW, "sk-…m3Zp")


@pytest.mark.parametrize(
    ("delta", "text"),
    [(timedelta(seconds=20), "in less than a minute"), (timedelta(minutes=5), "in 5 min"),
     (timedelta(hours=5, minutes=12), "in 5 h 12 min"), (timedelta(days=30), "in 30 days"),
     (-timedelta(days=3), "3 days ago")],
)
def test_relative(delta: timedelta, text: str) -> None:
    assert usage.relative(NOW + delta, NOW) == text
