"""Each simulator fault does what its name says."""

from __future__ import annotations

import json
import time

import anyio
import httpx
import pytest
from recording_receiver import Receiver
from replicate.exceptions import ReplicateError

from replicate_audio.download import Downloader
from replicate_audio.errors import (
    ConfigurationError,
    OutputExpiredError,
    SignatureMismatchError,
    StaleTimestampError,
)
from replicate_audio.testing import Faults, ReplicateSimulator
from replicate_audio.webhooks import verify_webhook

MODEL = "stability-ai/stable-audio-2.5"


def _create(
    sim: ReplicateSimulator, receiver: Receiver, events: tuple[str, ...] = ("start", "completed")
) -> str:
    prediction = sim.client().predictions.create(
        model=MODEL,
        input={"duration": 1},
        webhook=f"{receiver.url}/hook",
        webhook_events_filter=list(events),
    )
    return prediction.id


def _finished(sim: ReplicateSimulator, faults: Faults) -> str:
    sim.queue_faults(faults)
    prediction = sim.client().predictions.create(model=MODEL, input={"duration": 0.5})
    return str(sim.wait_for_prediction(prediction.id)["output"])


def test_duplicates_arrive_with_one_webhook_id(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """duplicates=3 sends three identical copies of the completed webhook, one id."""
    sim.faults = Faults(duplicates=3)
    _create(sim, receiver, ("completed",))
    sim.wait_idle()
    received = receiver.snapshot()
    assert len(received) == 3
    assert len({r.headers["webhook-id"] for r in received}) == 1
    assert len({r.body for r in received}) == 1
    assert [d.copy for d in sim.deliveries] == [1, 2, 3]


def test_out_of_order_sends_the_terminal_event_first(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """out_of_order holds the webhooks and sends them newest first."""
    sim.queue_faults(Faults(out_of_order=True))
    _create(sim, receiver)
    sim.wait_idle()
    assert [json.loads(b)["status"] for b in receiver.bodies()] == ["succeeded", "starting"]


def test_a_dropped_webhook_never_arrives_but_get_shows_the_end(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """drop_ratio=1 sends nothing; GET still shows the succeeded prediction."""
    sim.faults = Faults(drop_ratio=1.0)
    prediction_id = _create(sim, receiver)
    sim.wait_idle()
    assert receiver.snapshot() == []
    assert [(d.event, d.dropped) for d in sim.deliveries] == [
        ("start", True),
        ("completed", True),
    ]
    assert sim.client().predictions.get(prediction_id).status == "succeeded"


def test_drop_ratio_is_deterministic_for_a_seed(receiver: Receiver) -> None:
    """Two simulators with the same seed drop the same deliveries: the same events of the
    same predictions, in creation order (records of sent deliveries arrive in whatever order
    the sends finish, so they are compared by prediction and event)."""
    events = ("start", "logs", "output", "completed")
    patterns = []
    for _ in range(2):
        with ReplicateSimulator(run_time=0.05, seed=7, faults=Faults(drop_ratio=0.5)) as sim:
            created = []
            for _ in range(4):
                created.append(_create(sim, receiver, events))
                sim.wait_idle()
            first_copies = [d for d in sim.deliveries if d.copy <= 1]
            order = {prediction_id: n for n, prediction_id in enumerate(created)}
            patterns.append(
                sorted(
                    (order[d.prediction_id], events.index(d.event), d.dropped) for d in first_copies
                )
            )
    assert patterns[0] == patterns[1]
    # A 0.05 s run sends two of the four: its logs are throttled, its file comes with completed.
    assert len(patterns[0]) == 4 * 2
    dropped = [was_dropped for _, _, was_dropped in patterns[0]]
    assert any(dropped)  # some deliveries were dropped
    assert not all(dropped)  # and some were not


def test_delay_holds_each_webhook(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """delay=0.3 postpones each delivery by at least that long after its event."""
    sim.faults = Faults(delay=0.3)
    started = time.time()
    _create(sim, receiver, ("start",))
    (delivery,) = sim.wait_for_deliveries(1)
    assert delivery.time - started >= 0.3


def test_fail_with_fails_the_prediction(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """fail_with ends the prediction 'failed' with that error, webhook included."""
    sim.queue_faults(Faults(fail_with="CUDA out of memory"))
    prediction_id = _create(sim, receiver, ("completed",))
    sim.wait_idle()
    body = json.loads(receiver.bodies()[0])
    assert (body["status"], body["error"], body["output"]) == ("failed", "CUDA out of memory", None)
    assert sim.get_prediction(prediction_id)["status"] == "failed"


def test_cancel_cancels_half_way(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """cancel ends the prediction 'canceled' and sends that as the completed webhook."""
    sim.queue_faults(Faults(cancel=True))
    _create(sim, receiver, ("completed",))
    sim.wait_idle()
    assert [json.loads(b)["status"] for b in receiver.bodies()] == ["canceled"]


def test_download_errors_then_success(sim: ReplicateSimulator) -> None:
    """download_errors=2 answers 503 twice, then the file."""
    url = _finished(sim, Faults(download_errors=2))
    assert [httpx.get(url).status_code for _ in range(3)] == [503, 503, 200]
    assert [d.fault for d in sim.downloads] == ["error", "error", None]


def test_truncated_download_then_whole(sim: ReplicateSimulator) -> None:
    """truncate_downloads=1 closes the first body half way, then serves it whole."""
    url = _finished(sim, Faults(truncate_downloads=1))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url)
    assert httpx.get(url).status_code == 200


def test_slow_download_stalls(sim: ReplicateSimulator) -> None:
    """slow_downloads=1 stalls after the first bytes, long enough to trip a read timeout."""
    url = _finished(sim, Faults(slow_downloads=1, slow_download_seconds=0.5))
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(url, timeout=httpx.Timeout(5.0, read=0.2))
    assert httpx.get(url, timeout=1.0).status_code == 200


def test_our_downloader_retries_through_download_faults(sim: ReplicateSimulator) -> None:
    """replicate_audio's Downloader, with sim.settings(), gets the file after 503 and a cut."""
    url = _finished(sim, Faults(download_errors=1, truncate_downloads=1))

    async def main() -> int:
        async with (
            Downloader(sim.settings(), backoff=0.01) as downloader,
            downloader.fetch(url) as path,
        ):
            return path.stat().st_size

    assert anyio.run(main) > 0
    assert [d.fault for d in sim.downloads] == ["error", "truncated", None]


def test_expired_output_is_410_and_data_removed(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """expired: GET shows data_removed and no output; the URL the completed webhook carried
    answers 410, and our Downloader calls it expired."""
    sim.faults = Faults(expired=True)
    prediction = sim.client().predictions.create(
        model=MODEL, input={"duration": 0.5}, webhook=f"{receiver.url}/hook"
    )
    shown = sim.wait_for_prediction(prediction.id)
    assert (shown["data_removed"], shown["output"], shown["input"]) == (True, None, {})
    sim.wait_idle()
    data = json.loads(receiver.bodies()[-1])
    assert (data["status"], data["data_removed"]) == ("succeeded", False)
    response = httpx.get(data["output"])
    assert response.status_code == 410
    assert "data_removed" in response.text

    async def main() -> None:
        async with Downloader(sim.settings()) as downloader:
            await downloader.download(data["output"])

    with pytest.raises(OutputExpiredError):
        anyio.run(main)


def test_wrong_signature_is_refused(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """wrong_signature signs with a secret nobody has: verification fails."""
    sim.faults = Faults(wrong_signature=True)
    _create(sim, receiver, ("start",))
    sim.wait_idle()
    request = receiver.snapshot()[0]
    with pytest.raises(SignatureMismatchError):
        verify_webhook(request.headers, request.body, sim.secret)


def test_clock_skew_makes_the_timestamp_stale(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """clock_skew=-600 stamps deliveries ten minutes in the past."""
    sim.faults = Faults(clock_skew=-600)
    _create(sim, receiver, ("start",))
    sim.wait_idle()
    request = receiver.snapshot()[0]
    assert abs(int(request.headers["webhook-timestamp"]) - (time.time() - 600)) < 5
    with pytest.raises(StaleTimestampError):
        verify_webhook(request.headers, request.body, sim.secret, tolerance=300)


def test_rate_limited_creates_answer_429_with_retry_after(sim: ReplicateSimulator) -> None:
    """rate_limit_creates=2 refuses two creates with 429 and Retry-After, then accepts."""
    sim.faults = Faults(rate_limit_creates=2, retry_after=3)
    client = sim.client()
    for _ in range(2):
        with pytest.raises(ReplicateError) as raised:
            client.predictions.create(model=MODEL, input={})
        assert raised.value.status == 429
    assert client.predictions.create(model=MODEL, input={}).status == "starting"
    response = httpx.post(
        f"{sim.url}/v1/models/{MODEL}/predictions",
        json={"input": {}},
        headers={"Authorization": f"Bearer {sim.api_token}"},
    )
    assert response.status_code == 201
    sim.queue_faults(Faults(rate_limit_creates=1, retry_after=3))
    response = httpx.post(
        f"{sim.url}/v1/models/{MODEL}/predictions",
        json={"input": {}},
        headers={"Authorization": f"Bearer {sim.api_token}"},
    )
    assert (response.status_code, response.headers["retry-after"]) == (429, "3")
    assert response.json()["detail"] == "Request was throttled. Your rate limit resets in ~3s."
    assert [c.status_code for c in sim.creates] == [429, 429, 201, 201, 429]


def test_queued_and_per_prediction_faults_stay_with_their_prediction(
    sim: ReplicateSimulator,
) -> None:
    """queue_faults applies to the next create only; set_faults changes one prediction."""
    sim.queue_faults(Faults(fail_with="boom"))
    client = sim.client()
    first = client.predictions.create(model=MODEL, input={"duration": 0.5})
    second = client.predictions.create(model=MODEL, input={"duration": 0.5})
    sim.set_faults(second.id, Faults(expired=True))
    assert sim.wait_for_prediction(first.id)["status"] == "failed"
    assert sim.wait_for_prediction(second.id)["data_removed"] is True


def test_negative_fault_values_are_refused() -> None:
    """A negative count or ratio is a ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError, match=r"Faults\.duplicates"):
        Faults(duplicates=-1)


@pytest.mark.parametrize("statuses", [(200,), (399,), (600,), ("500",)])
def test_create_errors_must_be_error_statuses(statuses: tuple[object, ...]) -> None:
    """create_errors takes HTTP error statuses only, and names the field otherwise."""
    with pytest.raises(ConfigurationError, match=r"Faults\.create_errors"):
        Faults(create_errors=statuses)  # type: ignore[arg-type]
