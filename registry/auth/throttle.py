"""Per-client request rate (token bucket) and failed-login throttling (sliding window)."""

from __future__ import annotations

import time
from collections import OrderedDict, deque

MAX_CLIENTS = 100_000


class RateLimiter:
    """`rate` requests per second per key, with bursts up to `burst`."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = max(burst, 1)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def acquire(self, key: str) -> float:
        """0 when the request may go ahead, else the seconds to wait before the next one may."""
        if self.rate <= 0:
            return 0.0
        now = time.monotonic()
        tokens, at = self._buckets.pop(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1:
            tokens -= 1
        else:
            wait = (1 - tokens) / self.rate
        self._buckets[key] = (tokens, now)
        if len(self._buckets) > MAX_CLIENTS:
            self._buckets.popitem(last=False)
        return wait


class LoginThrottle:
    """At most `limit` failed logins per (client, user) in `window` seconds."""

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str) -> deque[float]:
        now = time.monotonic()
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def blocked_for(self, address: str, user: str) -> float:
        """Seconds until this client may try this user again (0: go ahead)."""
        failures = self._recent(f"{address}\0{user}")
        if self.limit > 0 and len(failures) >= self.limit:
            return max(failures[0] + self.window - time.monotonic(), 1.0)
        return 0.0

    def failed(self, address: str, user: str) -> None:
        key = f"{address}\0{user}"
        failures = self._recent(key)
        failures.append(time.monotonic())
        self._failures[key] = failures
        self._failures.move_to_end(key)
        if len(self._failures) > MAX_CLIENTS:
            self._failures.popitem(last=False)

    def succeeded(self, address: str, user: str) -> None:
        self._failures.pop(f"{address}\0{user}", None)
