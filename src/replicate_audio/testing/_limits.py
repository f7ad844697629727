"""The simulator's rate limits: a token bucket for creates and one for every other API call."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from ..errors import ConfigurationError
from ._predictions import Problem

#: "You can create predictions at 600 requests per minute. All other endpoints you can call
#: at 3000 requests per minute." (Replicate's rate limits page.)
CREATE_RATE_LIMIT = 600
READ_RATE_LIMIT = 3000
#: "You can make short bursts of requests above the default rate limits" (no size given):
#: by default a bucket holds a whole minute of requests, so an idle account may send its
#: minute's worth at once, then the refill rate.
BURST_SECONDS = 60.0


def throttled(retry_after: int) -> Problem:
    """The 429 of a throttled request: Replicate's documented body, with ``Retry-After``.

    Example:
        >>> problem = throttled(3)
        >>> problem.detail, problem.headers
        ('Request was throttled. Your rate limit resets in ~3s.', {'Retry-After': '3'})
    """
    return Problem(
        429,
        "Request was throttled",
        f"Request was throttled. Your rate limit resets in ~{retry_after}s.",
        headers={"Retry-After": str(retry_after)},
    )


class TokenBucket:
    """Tokens refilled continuously at *per_minute* / 60 a second, up to a capacity of
    *burst* seconds of refill (at least one token); each request takes one.

    Example:
        >>> now = [0.0]
        >>> bucket = TokenBucket(60, burst=2.0, clock=lambda: now[0])
        >>> bucket.take(), bucket.take(), bucket.take()
        (None, None, 1)
        >>> now[0] = 1.0
        >>> bucket.take()
    """

    def __init__(
        self,
        per_minute: float,
        *,
        burst: float = BURST_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """Take a token: ``None`` if one was there, else the whole seconds until one is
        (rounded up, so a retry after that long finds it)."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._stamp)
            self._tokens = min(self.capacity, self._tokens + elapsed * self.rate)
            self._stamp = now
            # The slack absorbs rounding: a retry after the advertised wait must find its token.
            if self._tokens >= 1.0 - 1e-9:
                self._tokens = max(0.0, self._tokens - 1.0)
                return None
            return max(1, math.ceil((1.0 - self._tokens) / self.rate))


def _bucket(name: str, per_minute: float | None, burst: float) -> TokenBucket | None:
    if per_minute is None:
        return None
    if isinstance(per_minute, bool) or not isinstance(per_minute, int | float) or per_minute <= 0:
        message = f"must be requests per minute > 0 or None, not {per_minute!r}"
        raise ConfigurationError(name, message)
    return TokenBucket(per_minute, burst=burst)


class RateLimits:
    """The account's two buckets; ``None`` for a limit means unlimited.

    Raises:
        ConfigurationError: a limit that is not a positive number, or a burst <= 0.
    """

    def __init__(self, *, create: float | None, read: float | None, burst: float) -> None:
        if not burst > 0:
            raise ConfigurationError("rate_limit_burst", f"must be seconds > 0, not {burst!r}")
        self._create = _bucket("create_rate_limit", create, burst)
        self._read = _bucket("read_rate_limit", read, burst)

    def check_create(self) -> None:
        """Count a create; raises the 429 :class:`Problem` when the create bucket is empty."""
        self._check(self._create)

    def check_read(self) -> None:
        """Count any other API call; raises the 429 when the read bucket is empty."""
        self._check(self._read)

    @staticmethod
    def _check(bucket: TokenBucket | None) -> None:
        wait = None if bucket is None else bucket.take()
        if wait is not None:
            raise throttled(wait)
