"""What unauthenticated traffic may cost the gateway: failed attempts per address, and
audit lines.

Every request is audited, but a client that is not known cannot be allowed to write the
log at wire speed (a 65 KB path on every 401 was 5.9 MB/s from four connections). So:

- :class:`FailureThrottle`: a token bucket of *failed* requests (401, 400, 431, ...) per
  client address. Past its burst, a failing request gets 429 with ``Retry-After`` instead of
  a 401. A request with good credentials is never throttled here, so a legitimate client
  behind the same address (a NAT, a test on loopback) keeps working; it has its own rate.
- :class:`LineBudget`: at most ``lines`` audit lines of unauthenticated requests per
  ``window`` seconds across all addresses; the rest are counted and reported in one
  ``event=audit-suppressed`` line per window. With every logged field cut to 200
  characters (``kv``), log growth from strangers is bounded: about ``lines`` x 1 KB per
  window, whatever the flood.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict

__all__ = ["FailureThrottle", "LineBudget"]


class FailureThrottle:
    """Failed requests per client address: ``burst`` at once, then ``rate`` per second.

    At most ``max_tracked`` addresses are remembered (the least recently failing are
    forgotten first), so a flood from many addresses cannot grow the table without bound.
    """

    def __init__(self, rate: float = 1.0, burst: int = 20, max_tracked: int = 10_000) -> None:
        self.rate, self.burst, self.max_tracked = rate, burst, max_tracked
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def fail(self, address: str) -> float:
        """Count one failure of ``address``: 0 if it is within its budget, else the seconds
        until it would be (for Retry-After)."""
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.pop(address, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            if tokens >= 1:
                tokens -= 1
                wait = 0.0
            else:
                wait = (1 - tokens) / self.rate
            self._buckets[address] = (tokens, now)
            while len(self._buckets) > self.max_tracked:
                self._buckets.popitem(last=False)
        return wait

    def __len__(self) -> int:
        return len(self._buckets)


class LineBudget:
    """At most ``lines`` lines per ``window`` seconds; ``take`` says whether to write one,
    and how many were suppressed in the window that just closed (to report once)."""

    def __init__(self, lines: int = 50, window: float = 1.0) -> None:
        self.lines, self.window = lines, window
        self._lock = threading.Lock()
        self._start = time.monotonic()
        self._used = 0
        self._suppressed = 0

    def take(self) -> tuple[bool, int]:
        now = time.monotonic()
        with self._lock:
            reported = 0
            if now - self._start >= self.window:
                reported, self._suppressed = self._suppressed, 0
                self._start, self._used = now, 0
            if self._used < self.lines:
                self._used += 1
                return True, reported
            self._suppressed += 1
            return False, reported
