"""The simulator's rate limits: token buckets for creates and for other API calls, 429s with
Retry-After and Replicate's documented body, file downloads never counted."""

from __future__ import annotations

import time

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from replicate.exceptions import ReplicateError

from replicate_audio import ConfigurationError
from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing._limits import TokenBucket

MODEL = "stability-ai/stable-audio-2.5"
THROTTLED = "Request was throttled. Your rate limit resets in ~1s."


def test_a_burst_beyond_the_create_bucket_is_throttled_until_a_token_refills() -> None:
    """60 creates a minute with a 3 s bucket: three creates pass at once, the fourth gets 429
    with Retry-After 1 and the documented body; after that second a create passes again."""
    with ReplicateSimulator(run_time=0.05, create_rate_limit=60, rate_limit_burst=3) as sim:
        client = sim.client()
        for _ in range(3):
            assert client.predictions.create(model=MODEL, input={}).status == "starting"
        with pytest.raises(ReplicateError) as raised:
            client.predictions.create(model=MODEL, input={})
        assert (raised.value.status, raised.value.detail) == (429, THROTTLED)
        response = httpx.post(
            f"{sim.url}/v1/predictions",
            json={"version": "meta/musicgen", "input": {}},
            headers={"Authorization": f"Bearer {sim.api_token}"},
        )
        assert response.status_code == 429
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json() == {
            "title": "Request was throttled",
            "detail": THROTTLED,
            "status": 429,
        }
        time.sleep(int(response.headers["retry-after"]))
        assert client.predictions.create(model=MODEL, input={}).status == "starting"
        assert [c.status_code for c in sim.creates] == [201, 201, 201, 429, 429, 201]


def test_reads_have_their_own_bucket_and_the_client_rides_out_its_429() -> None:
    """Gets, lists and models share the read bucket (creates do not touch it): past it they
    answer 429; the replicate client retries a GET after Retry-After and gets its answer."""
    with ReplicateSimulator(
        run_time=0.05, create_rate_limit=None, read_rate_limit=60, rate_limit_burst=2
    ) as sim:
        client = sim.client()
        created = [client.predictions.create(model=MODEL, input={}) for _ in range(5)]
        auth = {"Authorization": f"Bearer {sim.api_token}"}
        assert httpx.get(f"{sim.url}/v1/predictions", headers=auth).status_code == 200
        assert httpx.get(f"{sim.url}/v1/models/{MODEL}", headers=auth).status_code == 200
        refused = httpx.get(f"{sim.url}/v1/predictions/{created[0].id}", headers=auth)
        assert (refused.status_code, refused.headers["retry-after"]) == (429, "1")
        assert refused.json()["detail"] == THROTTLED
        started = time.monotonic()
        assert client.predictions.get(created[0].id).id == created[0].id
        assert time.monotonic() - started >= 0.9  # it waited for the token, then got it
        assert [c.status_code for c in sim.creates] == [201] * 5


def test_file_downloads_are_not_api_calls() -> None:
    """With the read bucket empty, an output file still downloads, again and again."""
    with ReplicateSimulator(run_time=0.05, read_rate_limit=60, rate_limit_burst=1) as sim:
        prediction = sim.client().predictions.create(model=MODEL, input={"duration": 1})
        output = sim.wait_for_prediction(prediction.id)["output"]
        auth = {"Authorization": f"Bearer {sim.api_token}"}
        assert httpx.get(f"{sim.url}/v1/predictions", headers=auth).status_code == 200
        assert httpx.get(f"{sim.url}/v1/predictions", headers=auth).status_code == 429
        assert [httpx.get(output).status_code for _ in range(5)] == [200] * 5


def test_unauthenticated_calls_do_not_spend_tokens() -> None:
    """A call with a wrong token answers 401 and leaves the bucket as it was."""
    with ReplicateSimulator(read_rate_limit=60, rate_limit_burst=1) as sim:
        wrong = {"Authorization": "Bearer r8_wrong"}
        answers = [httpx.get(f"{sim.url}/v1/predictions", headers=wrong) for _ in range(3)]
        assert [answer.status_code for answer in answers] == [401] * 3
        auth = {"Authorization": f"Bearer {sim.api_token}"}
        assert httpx.get(f"{sim.url}/v1/predictions", headers=auth).status_code == 200


@pytest.mark.parametrize(
    "options",
    [{"create_rate_limit": 0}, {"read_rate_limit": -1}, {"rate_limit_burst": 0}],
)
def test_bad_limits_are_refused(options: dict[str, float]) -> None:
    """A limit that is not requests per minute > 0, or a burst of no time, is refused."""
    with pytest.raises(ConfigurationError):
        ReplicateSimulator(**options)  # type: ignore[arg-type]


@given(
    per_minute=st.floats(1, 6000),
    burst=st.floats(0.1, 120),
    gaps=st.lists(st.floats(0, 5), max_size=60),
)
def test_a_bucket_never_grants_more_than_its_capacity_plus_refill(
    per_minute: float, burst: float, gaps: list[float]
) -> None:
    """Over any run of requests, the tokens granted are at most the capacity plus the refill
    since the start; and after a refusal, asking again Retry-After seconds later succeeds."""
    now = [0.0]
    bucket = TokenBucket(per_minute, burst=burst, clock=lambda: now[0])
    granted = 0
    for gap in gaps:
        now[0] += gap
        wait = bucket.take()
        if wait is None:
            granted += 1
        else:
            assert wait >= 1
            now[0] += wait
            assert bucket.take() is None
            granted += 1
        assert granted <= bucket.capacity + now[0] * bucket.rate + 1e-6
