"""The drift server's rate limits and body limits (issue 15).

Rate limits count only requests that got past authentication, keyed on who they proved to be: a
verified workspace by its id; the shared enrollment secret, which says nothing about who sends it,
by the source address. A refused request therefore never spends anyone else's budget. Identity
checks sent to Coder are limited per source address (cache misses only), so ever new workspace
ids cannot turn into a flood of Coder API calls. Failed sign-ins are limited per source address.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fastapi import Request
from http_guard.rate_limit import RateLimiter

from workspace_agent import wire

from .errors import ApiError

if TYPE_CHECKING:
    from .settings import Settings

ENROLL_MAX_BYTES = 16 * 1024
LOGIN_MAX_BYTES = 8 * 1024
OTHER_MAX_BYTES = 16 * 1024  # routes that take no body (GET, revoke, logout)


@dataclass
class Limits:
    enroll: RateLimiter
    coder_lookups: RateLimiter
    login_failures: RateLimiter


def make_limits(settings: Settings) -> Limits:
    window = settings.rate_window_s
    return Limits(
        enroll=RateLimiter(settings.enroll_rate_limit, window),
        coder_lookups=RateLimiter(settings.coder_lookup_rate_limit, window),
        login_failures=RateLimiter(settings.login_failure_limit, window),
    )


def source(request: Request) -> str:
    """The client's address (the proxy's, unless DRIFT_FORWARDED_ALLOW_IPS trusts it)."""
    return request.client.host if request.client else "unknown"


def too_many(wait: float, what: str) -> ApiError:
    """The 429 of a spent budget, with Retry-After."""
    seconds = max(math.ceil(wait), 1)
    return ApiError(
        429,
        "rate_limited",
        f"too many {what}: try again in {seconds} s",
        headers={"Retry-After": str(seconds)},
    )


def body_limit_for(settings: Settings) -> Any:
    """(method, path) → the largest body that route reads."""

    def limit_for(method: str, path: str) -> int:
        if path in (wire.REPORTS_PATH, wire.CORRECTIONS_PATH):  # a batch of up to 100 corrections
            return settings.max_body_bytes
        if path == wire.ENROLL_PATH:
            return ENROLL_MAX_BYTES
        if path == "/login":
            return LOGIN_MAX_BYTES
        return OTHER_MAX_BYTES

    return limit_for


def body_error(status: int, sentence: str, limit: int) -> dict[str, Any]:
    if status == 413:
        return {"detail": sentence, "reason": "too_large"}
    return {"detail": sentence + ": send it again", "reason": "timeout"}
