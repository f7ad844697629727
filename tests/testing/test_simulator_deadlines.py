"""Prediction deadlines (``Cancel-After``): aborted before the run starts, canceled during
it, the ``deadline`` field shown, a malformed or too short header refused."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest
from recording_receiver import Receiver
from replicate.exceptions import ReplicateError

from replicate_audio import ConfigurationError
from replicate_audio.testing import ReplicateSimulator

MODEL = "acme/queued"


def when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def test_a_deadline_before_the_start_aborts(receiver: Receiver) -> None:
    """Past its deadline while still queued, a prediction ends ``aborted``: never started,
    no output, no predict time, and its completed webhook says aborted."""
    with ReplicateSimulator(min_deadline=1) as sim:
        sim.add_model(MODEL, start_delay=3, run_time=0.2)
        client = sim.client(headers={"Cancel-After": "1s"})
        prediction = client.predictions.create(
            model=MODEL, input={}, webhook=f"{receiver.url}/hook"
        )
        shown = sim.wait_for_prediction(prediction.id)
        sim.wait_idle()
    assert (shown["status"], shown["started_at"], shown["output"]) == ("aborted", None, None)
    assert "predict_time" not in shown["metrics"]
    assert when(shown["completed_at"]) >= when(shown["deadline"])
    statuses = [json.loads(body)["status"] for body in receiver.bodies()]
    assert statuses == ["starting", "aborted"]


def test_a_deadline_during_the_run_cancels(receiver: Receiver) -> None:
    """Past its deadline while processing (a plain number is seconds), it ends ``canceled``
    with its start time and no output."""
    with ReplicateSimulator(min_deadline=1) as sim:
        sim.add_model(MODEL, run_time=2)
        prediction = sim.client(headers={"Cancel-After": "1"}).predictions.create(
            model=MODEL, input={}, webhook=f"{receiver.url}/hook"
        )
        shown = sim.wait_for_prediction(prediction.id)
        sim.wait_idle()
    assert (shown["status"], shown["output"]) == ("canceled", None)
    assert when(shown["started_at"]) < when(shown["deadline"]) <= when(shown["completed_at"])
    assert json.loads(receiver.bodies()[-1])["status"] == "canceled"


def test_the_deadline_field_is_creation_plus_cancel_after() -> None:
    """``deadline`` is the absolute time: created_at plus the header's duration; a prediction
    that finishes first simply succeeds, and one without the header shows no deadline."""
    with ReplicateSimulator(run_time=0.1) as sim:
        client = sim.client(headers={"Cancel-After": "1h30m45s"})
        prediction = client.predictions.create(model="meta/musicgen", input={})
        shown = sim.wait_for_prediction(prediction.id)
        plain = sim.client().predictions.create(model="meta/musicgen", input={})
    assert shown["status"] == "succeeded"
    allowed = when(shown["deadline"]) - when(shown["created_at"])
    assert allowed == dt.timedelta(hours=1, minutes=30, seconds=45)
    assert "deadline" not in sim.get_prediction(plain.id)


@pytest.mark.parametrize("value", ["soon", "5x", "1m1h", "", "-10s", "4s", "4.9"])
def test_a_malformed_or_too_short_cancel_after_is_refused(value: str) -> None:
    """A value of no documented form, or under Replicate's 5 s minimum, answers 422 and
    creates nothing."""
    with ReplicateSimulator() as sim:
        response = httpx.post(
            f"{sim.url}/v1/models/meta/musicgen/predictions",
            json={"input": {}},
            headers={"Authorization": f"Bearer {sim.api_token}", "Cancel-After": value},
        )
        assert response.status_code == 422
        assert response.json()["title"] == "Invalid Cancel-After header"
        with pytest.raises(ReplicateError):
            sim.client(headers={"Cancel-After": value}).predictions.create(
                model="meta/musicgen", input={}
            )
        assert [(c.status_code, c.prediction_id) for c in sim.creates] == [(422, None)] * 2


def test_the_minimum_is_a_test_knob() -> None:
    """``min_deadline`` must be seconds > 0."""
    with pytest.raises(ConfigurationError):
        ReplicateSimulator(min_deadline=0)
