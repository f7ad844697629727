"""The simulator's webhooks: signed, filtered, ordered, and retried like Replicate's."""

from __future__ import annotations

import itertools
import json

import replicate
import standardwebhooks
from recording_receiver import Receiver

from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing.simulator import DEFAULT_RETRY_DELAYS
from replicate_audio.webhooks import verify_webhook

MODEL = "stability-ai/stable-audio-2.5"


def _create(sim: ReplicateSimulator, receiver: Receiver, **params: object) -> str:
    prediction = sim.client().predictions.create(
        model=MODEL, input={"duration": 1}, webhook=f"{receiver.url}/hook", **params
    )
    return prediction.id


def test_deliveries_validate_with_three_verifiers(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """replicate.webhooks.validate, standardwebhooks and verify_webhook all accept them."""
    sim.add_model(MODEL, run_time=1.0)  # long enough for a logs webhook after the start one
    prediction_id = _create(sim, receiver)
    sim.wait_idle()
    received = receiver.snapshot()
    assert {d.event for d in sim.deliveries} == {"start", "logs", "completed"}
    secret = replicate.webhook.WebhookSigningSecret(key=sim.secret)
    for request in received:
        replicate.webhooks.validate(
            headers=request.headers, body=request.body.decode(), secret=secret, tolerance=300
        )
        standardwebhooks.Webhook(sim.secret).verify(request.body, request.headers)
        event = verify_webhook(request.headers, request.body, sim.secret, tolerance=300)
        assert event.prediction.id == prediction_id


def test_events_filter_and_order(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """Only the filtered events are sent, one prediction's in lifecycle order."""
    _create(sim, receiver, webhook_events_filter=["start", "completed"])
    sim.wait_idle()
    statuses = [json.loads(body)["status"] for body in receiver.bodies()]
    assert statuses == ["starting", "succeeded"]
    assert [d.event for d in sim.deliveries] == ["start", "completed"]
    assert all(d.ok and d.attempt == 1 for d in sim.deliveries)


def test_terminal_delivery_is_retried_with_the_same_id(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """A failed 'completed' webhook is retried until 2xx, keeping its webhook-id."""
    receiver.statuses = [200, 500, 503]  # start ok, then two failures of completed
    _create(sim, receiver, webhook_events_filter=["start", "completed"])
    sim.wait_idle()
    completed = [d for d in sim.deliveries if d.event == "completed"]
    assert [(d.attempt, d.status_code) for d in completed] == [(1, 500), (2, 503), (3, 200)]
    assert len({d.webhook_id for d in completed}) == 1
    assert len({r.headers["webhook-id"] for r in receiver.snapshot()[1:]}) == 1


def test_intermediate_deliveries_are_not_retried(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """A failed 'start' webhook is given up at once; 'completed' still follows."""
    receiver.statuses = [500]
    _create(sim, receiver, webhook_events_filter=["start", "completed"])
    sim.wait_idle()
    assert [(d.event, d.status_code) for d in sim.deliveries] == [
        ("start", 500),
        ("completed", 200),
    ]


def test_retries_stop_at_the_end_of_the_schedule(
    sim: ReplicateSimulator, receiver: Receiver
) -> None:
    """A receiver that always fails gets 1 + len(webhook_retry_delays) attempts."""
    receiver.default = 500
    _create(sim, receiver, webhook_events_filter=["completed"])
    sim.wait_idle()
    assert [d.attempt for d in sim.deliveries] == [1, 2, 3, 4]


def test_redirects_are_not_followed(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """A 307 is a failed delivery: the Location is never requested."""
    receiver.statuses = [307]
    receiver.location = f"{receiver.url}/elsewhere"
    _create(sim, receiver, webhook_events_filter=["completed"])
    sim.wait_idle()
    assert [r.path for r in receiver.snapshot()] == ["/hook", "/hook"]
    assert [d.status_code for d in sim.deliveries] == [307, 200]


def test_unreachable_receiver_is_recorded_as_an_error(sim: ReplicateSimulator) -> None:
    """A refused connection is an attempt with an error and no status code."""
    sim.client().predictions.create(
        model=MODEL, input={}, webhook="http://127.0.0.1:9/hook", webhook_events_filter=["start"]
    )
    (delivery,) = sim.wait_for_deliveries(1)
    assert delivery.status_code is None
    assert delivery.error is not None
    assert "Connect" in delivery.error


def test_the_default_schedule_is_cogs_backoff_for_about_a_minute() -> None:
    """By default a failed completed webhook is retried 9 times, cog's urllib3 backoff
    (0, then 0.2 s doubling), the last retry 51 s after the first attempt."""
    assert ReplicateSimulator().webhook_retry_delays == DEFAULT_RETRY_DELAYS
    assert DEFAULT_RETRY_DELAYS[:3] == (0.0, 0.2, 0.4)
    assert all(b == 2 * a for a, b in itertools.pairwise(DEFAULT_RETRY_DELAYS[1:]))
    assert 45 <= sum(DEFAULT_RETRY_DELAYS) <= 65


def test_a_4xx_answer_is_retried_too(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """A 404 or 410 to the completed webhook is retried like a 5xx, same webhook-id."""
    receiver.statuses = [404, 410]
    _create(sim, receiver, webhook_events_filter=["completed"])
    sim.wait_idle()
    assert [d.status_code for d in sim.deliveries] == [404, 410, 200]
    assert len({d.webhook_id for d in sim.deliveries}) == 1


def test_a_connection_error_on_completed_is_retried_to_the_end(sim: ReplicateSimulator) -> None:
    """Nobody listening: the completed webhook is tried 1 + len(schedule) times, one id."""
    sim.client().predictions.create(
        model=MODEL,
        input={},
        webhook="http://127.0.0.1:9/hook",
        webhook_events_filter=["completed"],
    )
    sim.wait_idle()
    attempts = sim.deliveries
    assert [d.attempt for d in attempts] == list(range(1, len(sim.webhook_retry_delays) + 2))
    assert all(d.status_code is None and d.error for d in attempts)
    assert len({d.webhook_id for d in attempts}) == 1
