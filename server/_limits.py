"""Rate limiting: a token bucket per connection (WebSocket) or per principal (HTTP)."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import trio


class TokenBucket:
    """Allows ``rate`` events per second on average, with bursts of ``burst``.

    The clock defaults to trio's, so tests with ``autojump_clock`` control it.
    """

    def __init__(
        self, rate: float, burst: float | None = None, clock: Callable[[], float] | None = None
    ) -> None:
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, 2.0 * rate)
        self._clock = clock or trio.current_time
        self._tokens = self.burst
        self._stamp = self._clock()

    def try_acquire(self) -> bool:
        """Take one token if available; ``False`` means the caller is over the limit."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


class KeyedLimiter:
    """One :class:`TokenBucket` per key (e.g. principal), keeping the most recent keys."""

    def __init__(self, rate: float, *, max_keys: int = 10_000) -> None:
        self.rate = rate
        self._max_keys = max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def try_acquire(self, key: str) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = TokenBucket(self.rate)
            # Bounded memory: forget the least recently used key (it starts with a full bucket).
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
        return bucket.try_acquire()
