"""A rate limit: at most `limit` requests per key in any `window` seconds (a sliding log).

Kept in memory: a restart forgets it, which only ever lets a workspace through sooner. Bounded:
keys whose window has passed are forgotten, and at most MAX_TRACKED keys are kept.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

MAX_TRACKED = 100_000


class RateLimiter:
    def __init__(
        self, limit: int, window: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1 or window <= 0:
            raise ValueError("limit must be at least 1 and window positive")
        self.limit = limit
        self.window = window
        self._clock = clock
        self._seen: dict[str, deque[float]] = {}

    def check(self, key: str) -> float | None:
        """Count a request for `key`; None when allowed, else the seconds until one would be."""
        now = self._clock()
        times = self._seen.setdefault(key, deque())
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return max(times[0] + self.window - now, 0.001)
        times.append(now)
        if len(self._seen) > MAX_TRACKED:
            self._forget_idle(now)
        return None

    def spent(self, key: str) -> float | None:
        """Like check, without counting: the seconds until `key` may go again, or None."""
        now = self._clock()
        times = self._seen.get(key)
        if not times:
            return None
        while times and times[0] <= now - self.window:
            times.popleft()
        if len(times) >= self.limit:
            return max(times[0] + self.window - now, 0.001)
        return None

    def _forget_idle(self, now: float) -> None:
        for key in [k for k, t in self._seen.items() if not t or t[-1] <= now - self.window]:
            del self._seen[key]
        # Still too many (a flood of distinct keys): forget the oldest, which only lets them
        # through sooner, so memory stays bounded whatever the keys are.
        for key in list(self._seen)[: max(len(self._seen) - MAX_TRACKED, 0)]:
            del self._seen[key]
