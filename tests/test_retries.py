"""Tests for the one retry rule: RetryPolicy's backoff, the Retry-After parser, and retrying()."""

from __future__ import annotations

import datetime as dt
import importlib.util
import math
from collections.abc import Iterator
from email.utils import format_datetime

import anyio
import anyio.lowlevel
import pytest
import stamina
from hypothesis import example, given
from hypothesis import strategies as st
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from replicate_audio.errors import ConfigurationError
from replicate_audio.retries import RetryDecision, RetryPolicy, parse_retry_after, retrying

UTC = dt.timezone.utc
NOW = dt.datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
BACKENDS = ["asyncio", *(["trio"] if importlib.util.find_spec("trio") else [])]


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every async test under each installed anyio backend."""
    return str(request.param)


@pytest.fixture
def waits() -> Iterator[list[float]]:
    """The waits stamina schedules, in order, recorded through its public retry hooks."""
    recorded: list[float] = []

    def record(details: RetryDetails) -> None:
        recorded.append(details.wait_for)

    set_on_retry_hooks([record])
    try:
        yield recorded
    finally:
        set_on_retry_hooks(None)


class Flaky:
    """Fails with the given exceptions in turn, then returns "ok"; counts its calls."""

    def __init__(self, *failures: Exception) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


class Throttled(Exception):
    """A failure that carries a Retry-After, as a 429 would."""

    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"throttled, retry after {retry_after}")
        self.retry_after = retry_after


def on_throttled(error: Exception) -> RetryDecision:
    """Retry Throttled (after its Retry-After when it has one) and ConnectionError."""
    if isinstance(error, Throttled):
        return True if error.retry_after is None else error.retry_after
    return isinstance(error, ConnectionError)


def run(policy: RetryPolicy, flaky: Flaky) -> str:
    """Call *flaky* in a sync retrying() loop over *policy*, with on_throttled."""
    for attempt in retrying(policy, on=on_throttled):
        with attempt:
            return flaky()
    raise AssertionError("unreachable")


async def arun(policy: RetryPolicy, flaky: Flaky) -> str:
    """Call *flaky* in an async retrying() loop over *policy*, with on_throttled."""
    async for attempt in retrying(policy, on=on_throttled):
        with attempt:
            await anyio.lowlevel.checkpoint()
            return flaky()
    raise AssertionError("unreachable")


# --- RetryPolicy -----------------------------------------------------------------------------


def test_policy_defaults_and_keyword_only() -> None:
    """The constructor keeps its keyword-only form and defaults (5 tries, 0.5 s, 20 s)."""
    policy = RetryPolicy()
    assert (policy.attempts, policy.base_delay, policy.max_delay) == (5, 0.5, 20.0)
    assert RetryPolicy(attempts=2, base_delay=0.1, max_delay=1.0).attempts == 2
    with pytest.raises(TypeError):
        RetryPolicy(3)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("field", "value"),
    [("attempts", 0), ("attempts", -1), ("base_delay", -0.1), ("max_delay", math.nan)],
)
def test_policy_refuses_impossible_values(field: str, value: float) -> None:
    """No tries at all, or a negative or NaN delay, is a ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError, match=f"RetryPolicy.{field}"):
        RetryPolicy(**{field: value})  # type: ignore[arg-type]


def test_policy_backs_off_within_its_cap() -> None:
    """Each delay lies in [ceiling/2, ceiling], the ceiling doubling up to max_delay."""
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=4.0)
    for attempt in [*range(1, 10), 10_000]:
        ceiling = min(4.0, 0.5 * 2 ** min(attempt - 1, 64))
        delays = [policy.delay(attempt, retry_after=None) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), attempt
        assert len(set(delays)) > 1  # jittered


@pytest.mark.parametrize(
    ("retry_after", "expected"), [(2.5, 2.5), (0.0, 0.0), (60.0, 4.0), (-3.0, 0.0), (math.inf, 4.0)]
)
def test_policy_honours_retry_after_up_to_its_cap(retry_after: float, expected: float) -> None:
    """A Retry-After replaces the backoff, capped at max_delay and never negative."""
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert policy.delay(1, retry_after=retry_after) == expected


# --- parse_retry_after -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("  7 ", 7.0),
        ("1.5", 1.5),
        ("0.25", 0.25),
        ("-5", 0.0),
        ("-0.5", 0.0),
        ("Wed, 21 Oct 2015 07:29:00 GMT", 60.0),  # IMF-fixdate, a minute after NOW
        ("Wednesday, 21-Oct-15 07:28:30 GMT", 30.0),  # obsolete RFC 850 form
        ("Wed Oct 21 07:28:10 2015", 10.0),  # obsolete asctime form, UTC by definition
        ("Wed, 21 Oct 2015 07:28:05 -0000", 5.0),
        ("Wed, 21 Oct 2015 08:28:00 +0100", 0.0),  # the same instant as NOW
        ("Tue, 20 Oct 2015 07:28:00 GMT", 0.0),  # in the past
    ],
)
def test_parses_both_forms(value: str, expected: float) -> None:
    """Delay-seconds (decimal too) and HTTP-dates measured from now; the past and negatives
    are 0."""
    assert parse_retry_after(value, now=NOW) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "   ",
        "soon",
        "5s",
        "1e3",
        "0x10",
        "+5",
        "1.",
        ".5",
        "1,5",
        "nan",
        "inf",
        "Wed, 21 Oct 2015",
        "Sun, 31 Feb 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 25:28:00 GMT",
        "Wed, 21 Oct 99999 07:28:00 GMT",
    ],
)
def test_invalid_values_are_none(value: str | None) -> None:
    """An absent value, or one of neither form, is None (the caller falls back to backoff)."""
    assert parse_retry_after(value, now=NOW) is None


def test_dates_default_to_the_current_time() -> None:
    """Without now=, an HTTP-date is measured from the clock (a naive now counts as UTC)."""
    soon = dt.datetime.now(UTC) + dt.timedelta(hours=1)
    waited = parse_retry_after(format_datetime(soon, usegmt=True))
    assert waited is not None
    assert 3590 <= waited <= 3600
    naive_now = NOW.replace(tzinfo=None)
    assert parse_retry_after("Wed, 21 Oct 2015 07:29:00 GMT", now=naive_now) == 60.0


@given(seconds=st.integers(min_value=0, max_value=10**30))
def test_delay_seconds_round_trip(seconds: int) -> None:
    """Any delay-seconds value is read as that many seconds."""
    assert parse_retry_after(str(seconds)) == float(seconds)


@given(
    when=st.datetimes(
        min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
    now=st.datetimes(
        min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(9999, 1, 1), timezones=st.just(UTC)
    ),
)
def test_http_dates_round_trip(when: dt.datetime, now: dt.datetime) -> None:
    """Any IMF-fixdate is read as the whole seconds from now until it, or 0 once past."""
    when = when.replace(microsecond=0)
    expected = max((when - now).total_seconds(), 0.0)
    assert parse_retry_after(format_datetime(when, usegmt=True), now=now) == expected


@given(value=st.text())
@example(value="9" * 400)
@example(value="Mon, 01 Jan 0001 00:00:00 GMT")
def test_any_text_is_none_or_a_wait(value: str) -> None:
    """Whatever the header holds, the parser raises nothing and answers None or a wait >= 0."""
    waited = parse_retry_after(value, now=NOW)
    assert waited is None or waited >= 0.0


# --- retrying --------------------------------------------------------------------------------


def test_retries_until_the_block_succeeds(waits: list[float]) -> None:
    """Failures that on= accepts are retried with the policy's backoff until one succeeds."""
    flaky = Flaky(ConnectionError("refused"), ConnectionError("refused"))
    policy = RetryPolicy(attempts=5, base_delay=0.02, max_delay=0.03)
    for attempt in retrying(policy, on=on_throttled):
        with attempt:
            result = flaky()
    assert (result, flaky.calls) == ("ok", 3)
    assert len(waits) == 2
    assert 0.01 <= waits[0] <= 0.02
    assert 0.015 <= waits[1] <= 0.03


def test_gives_up_after_the_last_attempt_with_the_last_error(waits: list[float]) -> None:
    """After the policy's attempts the last exception propagates unchanged."""
    flaky = Flaky(*(ConnectionError(f"refused {n}") for n in range(1, 5)))
    with pytest.raises(ConnectionError, match="refused 3"):
        run(RetryPolicy(attempts=3, base_delay=0.0), flaky)
    assert flaky.calls == 3
    assert waits == [0.0, 0.0]


def test_refused_failures_propagate_at_once(waits: list[float]) -> None:
    """An exception on= answers False for is raised from the first attempt."""
    flaky = Flaky(KeyError("permanent"))
    with pytest.raises(KeyError):
        run(RetryPolicy(), flaky)
    assert flaky.calls == 1
    assert waits == []


def test_retry_after_replaces_the_backoff_up_to_max_delay(waits: list[float]) -> None:
    """A wait answered by on= (a Retry-After) is waited instead of the backoff, capped."""
    flaky = Flaky(Throttled(0.01), Throttled(30.0), Throttled(None))
    policy = RetryPolicy(attempts=4, base_delay=0.04, max_delay=0.05)
    for attempt in retrying(policy, on=on_throttled):
        with attempt:
            flaky()
    assert flaky.calls == 4
    assert waits[:2] == [0.01, 0.05]
    assert 0.05 / 2 <= waits[2] <= 0.05  # no Retry-After: the backoff of try 3


def test_timedelta_waits_are_accepted(waits: list[float]) -> None:
    """on= may answer a timedelta, as stamina's own hooks may."""
    flaky = Flaky(ConnectionError("refused"))
    for attempt in retrying(RetryPolicy(max_delay=1.0), on=lambda _: dt.timedelta(milliseconds=20)):
        with attempt:
            flaky()
    assert waits == [0.02]


def test_each_iteration_starts_afresh() -> None:
    """One Retrying can be looped over again, each time with all of its attempts."""
    loop = retrying(RetryPolicy(attempts=2, base_delay=0.0), on=on_throttled)
    for _ in range(2):
        flaky = Flaky(ConnectionError("refused"))
        for attempt in loop:
            with attempt:
                flaky()
        assert flaky.calls == 2


def test_stamina_testing_switch_applies(waits: list[float]) -> None:
    """stamina.set_testing sets the attempts and removes every wait, Retry-After included."""
    flaky = Flaky(Throttled(30.0), Throttled(30.0), Throttled(30.0))
    with stamina.set_testing(True, attempts=2), pytest.raises(Throttled):
        run(RetryPolicy(attempts=10, max_delay=60.0), flaky)
    assert flaky.calls == 2
    assert waits == [0.0]


@pytest.mark.anyio
async def test_async_loop_retries_and_honours_retry_after(waits: list[float]) -> None:
    """async for serves the same loop; waits sleep on the running event loop."""
    flaky = Flaky(Throttled(0.01), ConnectionError("refused"))
    policy = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02)
    assert await arun(policy, flaky) == "ok"
    assert flaky.calls == 3
    assert waits[0] == 0.01
    assert 0.01 <= waits[1] <= 0.02  # try 2 failed: ceiling min(0.02, 0.01 * 2)


@pytest.mark.anyio
async def test_async_gives_up_with_the_last_error() -> None:
    """The async loop lets the last exception through after the last attempt."""
    flaky = Flaky(*(Throttled(0.0) for _ in range(3)))
    with pytest.raises(Throttled):
        await arun(RetryPolicy(attempts=3), flaky)
    assert flaky.calls == 3


@pytest.mark.anyio
async def test_cancellation_is_never_retried() -> None:
    """A cancelled attempt ends the loop at once, whatever on= would say."""
    decisions: list[BaseException] = []

    def on(error: Exception) -> RetryDecision:
        decisions.append(error)
        return True

    calls = 0
    with anyio.CancelScope() as scope:
        scope.cancel()
        async for attempt in retrying(RetryPolicy(attempts=5, base_delay=0.0), on=on):
            with attempt:
                calls += 1
                await anyio.sleep(1)
    assert scope.cancelled_caught
    assert calls == 1
    assert decisions == []
