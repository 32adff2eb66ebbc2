"""key_provisioner.keys: key derivation and the reuse/generate/refuse decision, as tables."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from key_provisioner.keys import (
    generate_body,
    Decision,
    KeyFacts,
    Stored,
    decide,
    derive_key,
    facts_from_info,
    is_downgrade,
    normalize_level,
)
from key_provisioner.ratelimit import RateLimiter

NOW = datetime(2031, 3, 4, 12, 0, tzinfo=UTC)
LIVE = NOW + timedelta(days=10)
PAST = NOW - timedelta(seconds=1)


def test_derived_keys_are_stable_distinct_and_key_shaped() -> None:
    one = derive_key("s" * 32, "7C6B…", 0)
    assert one == derive_key("s" * 32, "7c6b…", 0)  # workspace ids compare without case
    assert (
        len(
            {
                one,
                derive_key("s" * 32, "7c6b…", 1),
                derive_key("t" * 32, "7c6b…", 0),
                derive_key("s" * 32, "other", 0),
            }
        )
        == 4
    )
    assert one.startswith("sk-") and len(one) == 46
    assert all(c.isalnum() or c in "-_" for c in one[3:])


@pytest.mark.parametrize(
    ("stored", "facts", "requested", "expected"),
    [
        # first request: generation 0 with the requested level
        (None, None, "design-first", Decision("generate", 0, "design-first", "new")),
        # a restart: the live key and its level, whatever is asked now
        (
            Stored(0, "design-first"),
            KeyFacts("design-first", LIVE, False),
            "design-first",
            Decision("reuse", 0, "design-first", "live"),
        ),
        (
            Stored(0, "design-first"),
            KeyFacts("design-first", LIVE, False),
            "unrestricted",
            Decision("reuse", 0, "design-first", "live", mismatch=True),
        ),
        (
            Stored(2, "standard"),
            KeyFacts("standard", None, False),
            "standard",
            Decision("reuse", 2, "standard", "live"),
        ),
        # the key's own metadata wins over the provisioner's memory
        (
            Stored(0, "standard"),
            KeyFacts("design-first", LIVE, False),
            "standard",
            Decision("reuse", 0, "design-first", "live", mismatch=True),
        ),
        # no level on the key: the remembered one
        (
            Stored(0, "design-first"),
            KeyFacts(None, LIVE, False),
            "standard",
            Decision("reuse", 0, "design-first", "live", mismatch=True),
        ),
        # deleted by an admin: the next generation, with the level now requested
        (
            Stored(0, "design-first"),
            None,
            "unrestricted",
            Decision("generate", 1, "unrestricted", "deleted"),
        ),
        # expired: the next generation, but the old level (waiting is no way around it)
        (
            Stored(1, "design-first"),
            KeyFacts("design-first", PAST, False),
            "unrestricted",
            Decision("generate", 2, "design-first", "expired", mismatch=True),
        ),
        # blocked: refused, nothing made
        (
            Stored(0, "standard"),
            KeyFacts("standard", LIVE, True),
            "standard",
            Decision("refuse", 0, "standard", "blocked"),
        ),
        # the provisioner lost its memory but LiteLLM still has generation 0
        (
            None,
            KeyFacts("standard", LIVE, False),
            "standard",
            Decision("reuse", 0, "standard", "live"),
        ),
    ],
)
def test_decide(
    stored: Stored | None, facts: KeyFacts | None, requested: str, expected: Decision
) -> None:
    assert decide(stored, facts, requested, NOW) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("design-first", ("design-first", False)),
        (" standard ", ("standard", False)),
        ("yolo", ("standard", True)),
        (None, ("standard", False)),
        ("", ("standard", False)),
        (7, ("standard", True)),
    ],
)
def test_normalize_level(value: object, expected: tuple[str, bool]) -> None:
    assert normalize_level(value) == expected


def test_downgrade_means_less_strict() -> None:
    assert is_downgrade("design-first", "standard") and is_downgrade("standard", "unrestricted")
    assert not is_downgrade("standard", "design-first") and not is_downgrade("standard", "standard")


def test_facts_from_litellms_key_info() -> None:
    body = {
        "key": "h",
        "info": {
            "metadata": {"enforcement_level": "design-first"},
            "expires": "2031-03-04T12:00:00",
            "blocked": None,
        },
    }
    assert facts_from_info(body) == KeyFacts("design-first", NOW, False)
    assert facts_from_info({"info": {"expires": None, "blocked": True}}) == KeyFacts(
        None, None, True
    )
    assert facts_from_info({"error": {"message": "x"}}) is None
    assert facts_from_info({"info": {"expires": "not a date"}}) == KeyFacts(None, None, False)


def test_rate_limiter_is_a_sliding_window_per_key() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    assert limiter.check("a") is None and limiter.check("a") is None
    assert limiter.check("a") == pytest.approx(10.0)
    assert limiter.check("b") is None  # another workspace is not affected
    now[0] = 9.0
    assert limiter.check("a") == pytest.approx(1.0)
    now[0] = 10.5
    assert limiter.check("a") is None


def test_generate_body_names_the_workspace_the_way_litellm_accepts() -> None:
    """A database-backed LiteLLM refuses `workspace_id` anywhere in a /key/generate body (401):
    the identity goes in metadata under `coder_workspace`, and no other field is dropped."""
    body = generate_body(
        key="sk-x", workspace_id="ws-1", owner="alice", workspace_name="dev", level="standard",
        guardrail_action="block", identity="agent-token", generation=2, template_name="python",
        budget=10.0, budget_duration="1d", rpm_limit=60, tpm_limit=100000, duration="30d",
    )

    def names(value: object) -> set[str]:
        if isinstance(value, dict):
            return set(value) | {n for v in value.values() for n in names(v)}
        return set()

    assert "workspace_id" not in names(body)
    assert body["metadata"]["coder_workspace"] == "ws-1"
    assert body["metadata"]["enforcement_level"] == "standard"
    assert body["metadata"]["generation"] == 2
    assert body["key_alias"] == "workspace-ws-1"
