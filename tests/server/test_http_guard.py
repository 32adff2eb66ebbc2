"""http_guard's limiter: a sliding window per key, a peek that does not count, bounded memory."""

from __future__ import annotations

import pytest
from http_guard import rate_limit
from http_guard.rate_limit import RateLimiter


def test_spent_peeks_without_counting() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 10.0, clock=lambda: now[0])
    assert limiter.spent("a") is None
    assert limiter.check("a") is None and limiter.spent("a") is None  # one of two used
    assert limiter.check("a") is None
    assert limiter.spent("a") == pytest.approx(10.0)  # spent: says so, counts nothing
    now[0] = 10.5
    assert limiter.spent("a") is None and limiter.check("a") is None


def test_a_flood_of_distinct_keys_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rate_limit, "MAX_TRACKED", 100)
    limiter = RateLimiter(5, 60.0, clock=lambda: 1.0)  # nothing ever ages out
    for i in range(1000):
        assert limiter.check(f"fresh-{i}") is None
    assert len(limiter._seen) <= 101
