"""The one retry rule of replicate-audio: a backoff policy, Retry-After, and loops on stamina.

``retrying(policy, on=...)`` serves ``for`` and ``async for`` alike; stamina runs the loop,
so its testing switch (``stamina.set_testing``) and its instrumentation apply to ours.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import re
from collections.abc import AsyncIterator, Callable, Iterator
from email.utils import parsedate_to_datetime
from typing import Any, TypeAlias

import attrs
import stamina

from .errors import ConfigurationError

__all__ = ["RetryDecision", "RetryPolicy", "Retrying", "parse_retry_after", "retrying"]

#: What an ``on`` hook answers for a failure: False to give up (the error propagates),
#: True to retry after the policy's backoff, or a wait (seconds or a timedelta, such as a
#: ``Retry-After``) to retry after that instead, capped at the policy's ``max_delay``.
RetryDecision: TypeAlias = bool | float | dt.timedelta

_SECONDS = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def _at_least(minimum: float) -> Callable[[object, attrs.Attribute[Any], float], None]:
    def check(_: object, attribute: attrs.Attribute[Any], value: float) -> None:
        # "not >=" also refuses NaN.
        if not value >= minimum:
            raise ConfigurationError(
                f"RetryPolicy.{attribute.name}", f"must be at least {minimum}, got {value!r}"
            )

    return check


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """How often to try, and how long to wait between tries: capped, jittered, exponential.

    Try ``n`` (from 1) that failed is followed by a wait drawn from ``[c/2, c]`` with
    ``c = min(max_delay, base_delay * 2 ** (n - 1))``; a ``Retry-After`` replaces that wait
    but is capped at ``max_delay`` as well.

    Attributes:
        attempts: tries in all, the first included (at least 1).
        base_delay: the ceiling of the first wait, in seconds.
        max_delay: the longest wait, in seconds, also for a ``Retry-After``.

    Raises:
        ConfigurationError: a count below 1 or a negative (or NaN) delay.

    Example:
        >>> RetryPolicy(attempts=3, base_delay=0.0).delay(1, retry_after=None)
        0.0
        >>> RetryPolicy(max_delay=20.0).delay(2, retry_after=120)
        20.0
    """

    attempts: int = attrs.field(default=5, validator=_at_least(1))
    base_delay: float = attrs.field(default=0.5, validator=_at_least(0.0))
    max_delay: float = attrs.field(default=20.0, validator=_at_least(0.0))

    def delay(self, attempt: int, *, retry_after: float | None) -> float:
        """Seconds to wait after try number *attempt* failed, before the next one.

        Args:
            attempt: the number of the try that failed, from 1.
            retry_after: the server's ``Retry-After`` in seconds, or None.

        Example:
            >>> RetryPolicy(base_delay=1.0).delay(1, retry_after=-3)
            0.0
        """
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_delay)
        try:
            ceiling = min(self.max_delay, self.base_delay * 2 ** (attempt - 1))
        except OverflowError:
            ceiling = self.max_delay
        return random.uniform(ceiling / 2, ceiling)


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait according to a ``Retry-After`` header value (RFC 9110, section 10.2.3).

    Both forms are read: delay-seconds (a decimal fraction is accepted too) and an
    HTTP-date (IMF-fixdate, and the obsolete RFC 850 and asctime forms), which is measured
    from *now*. A wait in the past, or a negative number, is 0.

    Args:
        value: the header's value, or None when it is absent.
        now: the time an HTTP-date is measured from (default: the current time, UTC).

    Returns:
        Seconds (0 or more; ``inf`` for a number too large for a float), or None when the
        value is absent or of neither form.

    Example:
        >>> parse_retry_after("120")
        120.0
        >>> now = dt.datetime(2015, 10, 21, 7, 27, tzinfo=dt.timezone.utc)
        >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=now)
        60.0
        >>> parse_retry_after("soon") is None
        True
    """
    if value is None:
        return None
    value = value.strip()
    if _SECONDS.fullmatch(value):
        return max(float(value), 0.0)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" and the asctime form carry no zone: HTTP dates are UTC
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    if now.tzinfo is None:
        now = now.replace(tzinfo=dt.timezone.utc)
    return max((when - now).total_seconds(), 0.0)


def _seconds(wait: float | dt.timedelta) -> float | None:
    seconds = wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
    return None if math.isnan(seconds) else seconds


class _Run:
    """One pass over the attempts: knows which try failed, so the policy can pick the wait."""

    def __init__(self, policy: RetryPolicy, on: Callable[[Exception], RetryDecision]) -> None:
        self._policy = policy
        self._on = on
        self.number = 0
        # stamina's own backoff is never used (the hook always names the wait), so its
        # parameters are set for Attempt.next_wait to be the lower bound of the policy's.
        self.context = stamina.retry_context(
            on=self._wait,
            attempts=policy.attempts,
            timeout=None,
            wait_initial=policy.base_delay / 2,
            wait_max=policy.max_delay / 2,
            wait_jitter=0.0,
            wait_exp_base=2,
        )

    def _wait(self, error: Exception) -> bool | float:
        # Cancellation and KeyboardInterrupt reach the hook too: they are never retried.
        if not isinstance(error, Exception):
            return False  # type: ignore[unreachable]
        decision = self._on(error)
        if decision is False:
            return False
        retry_after = None if decision is True else _seconds(decision)
        return self._policy.delay(self.number, retry_after=retry_after)


class _AsyncAttempts:
    """The async iterator of one run (a class, not an async generator, so that leaving the
    loop early leaves nothing to finalize)."""

    def __init__(self, run: _Run) -> None:
        self._run = run
        self._attempts = run.context.__aiter__()

    def __aiter__(self) -> _AsyncAttempts:
        return self

    async def __anext__(self) -> stamina.Attempt:
        attempt = await self._attempts.__anext__()
        self._run.number = attempt.num
        return attempt


@attrs.frozen
class Retrying:
    """The attempts of :func:`retrying`: iterate with ``for`` or ``async for``, as often as needed.

    Each iteration starts afresh with the policy's attempts. Create it with :func:`retrying`.
    """

    policy: RetryPolicy
    on: Callable[[Exception], RetryDecision]

    def __iter__(self) -> Iterator[stamina.Attempt]:
        run = _Run(self.policy, self.on)
        for attempt in run.context:
            run.number = attempt.num
            yield attempt

    def __aiter__(self) -> AsyncIterator[stamina.Attempt]:
        return _AsyncAttempts(_Run(self.policy, self.on))


def retrying(policy: RetryPolicy, *, on: Callable[[Exception], RetryDecision]) -> Retrying:
    """Attempts of a block of code, retried by *policy* while *on* says so.

    Each attempt is a context manager: an exception raised in it is handed to *on*, which
    answers a :data:`RetryDecision`: False lets the exception propagate at once, True waits
    the policy's backoff, and a number of seconds (or a timedelta), typically a parsed
    ``Retry-After``, waits that long instead, capped at ``policy.max_delay``. After the last
    attempt the last exception propagates. A block that succeeds ends the loop. Cancellation
    is never retried. There is no overall time limit (stamina's ``timeout`` is off): the
    policy's attempts and delays bound the time spent.

    Args:
        policy: the number of attempts and the backoff.
        on: decides, per exception, whether and after how long to try again.

    Returns:
        An iterable of ``stamina.Attempt`` for ``for`` (waits block) and ``async for`` (waits
        sleep on the running asyncio or trio loop).

    Example:
        >>> calls = []
        >>> def flaky() -> str:
        ...     calls.append(1)
        ...     if len(calls) < 3:
        ...         raise ConnectionError("refused")
        ...     return "ok"
        >>> def on(error: Exception) -> RetryDecision:
        ...     return 0.0 if isinstance(error, ConnectionError) else False  # "Retry-After: 0"
        >>> for attempt in retrying(RetryPolicy(attempts=3), on=on):
        ...     with attempt:
        ...         result = flaky()
        >>> result, len(calls)
        ('ok', 3)
    """
    return Retrying(policy, on)
