"""Per-probe rate limits, in memory only (the client address is never written anywhere)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

__all__ = ["TokenBuckets"]


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


@dataclass
class TokenBuckets:
    """A token bucket per key: ``per_minute``/60 tokens a second, up to ``burst``. ``per_minute`` 0: no limit.

    The table is bounded: when it reaches ``max_keys``, buckets that have refilled are dropped (they
    carry no information), and if that is not enough (a flood of distinct keys) it starts over.
    """

    per_minute: float
    burst: int
    max_keys: int = 100_000
    _buckets: dict[str, _Bucket] = field(default_factory=dict)

    def take(self, key: str, n: int = 1, now: float | None = None) -> float:
        """0.0 if ``n`` tokens were taken, else the seconds until they could be (nothing is taken)."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        rate = self.per_minute / 60.0
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._prune(now, rate)
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        else:
            bucket.tokens = min(float(self.burst), bucket.tokens + (now - bucket.stamp) * rate)
            bucket.stamp = now
        if bucket.tokens >= n:
            bucket.tokens -= n
            return 0.0
        if n > self.burst:  # can never be granted at once: wait for a full bucket and ask for less
            return self.burst / rate
        return (n - bucket.tokens) / rate

    def _prune(self, now: float, rate: float) -> None:
        full_after = self.burst / rate if rate > 0 else math.inf
        for key in [k for k, b in self._buckets.items() if now - b.stamp >= full_after]:
            del self._buckets[key]
        if len(self._buckets) >= self.max_keys:
            self._buckets.clear()

    def __len__(self) -> int:
        return len(self._buckets)
