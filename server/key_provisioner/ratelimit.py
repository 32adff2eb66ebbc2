"""Per-workspace rate limit of key requests: the shared sliding-window limiter (http_guard)."""

from __future__ import annotations

from http_guard.rate_limit import MAX_TRACKED, RateLimiter

__all__ = ["MAX_TRACKED", "RateLimiter"]
