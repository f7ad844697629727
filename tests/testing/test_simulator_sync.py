"""The simulator's sync mode: ``Prefer: wait`` holds the create, and inlines the files."""

from __future__ import annotations

import base64

import httpx
import pytest
from recording_receiver import Receiver

from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing._sync import requested_wait

MODEL = "stability-ai/stable-audio-2.5"
# replicate 1.0.7's predictions.create(model=..., wait=...) drops wait; models.predictions
# .create sends it, as replicate.run does.


def test_a_finished_prediction_is_answered_with_data_uris(sim: ReplicateSimulator) -> None:
    """wait=True: the create answers succeeded, its output an audio/mpeg data: URI holding
    the same bytes the file URL serves."""
    prediction = sim.client().models.predictions.create(MODEL, input={"duration": 1}, wait=True)
    assert prediction.status == "succeeded"
    assert isinstance(prediction.output, str)
    head, _, payload = prediction.output.partition(",")
    assert head == "data:audio/mpeg;base64"
    url = sim.get_prediction(prediction.id)["output"]  # GET still shows the file URL
    assert base64.b64decode(payload) == httpx.get(url).content


def test_a_list_output_is_inlined_item_by_item(sim: ReplicateSimulator) -> None:
    """A list model's files are each a data: URI (wav here)."""
    sim.add_model("acme/loops", run_time=0.1, output_as_list=True, output_files=2)
    prediction = sim.client().models.predictions.create(
        "acme/loops", input={"duration": 1, "output_format": "wav"}, wait=5
    )
    assert prediction.status == "succeeded"
    assert [item.split(",")[0] for item in prediction.output] == ["data:audio/wav;base64"] * 2


def test_a_slow_model_is_answered_unfinished_after_n_seconds(sim: ReplicateSimulator) -> None:
    """wait=1 on a 3 s model: the answer comes after about a second, still running, and the
    prediction goes on to succeed with its file URL."""
    sim.add_model(MODEL, run_time=3.0)
    prediction = sim.client().models.predictions.create(MODEL, input={"duration": 1}, wait=1)
    assert prediction.status == "processing"
    assert prediction.output is None
    assert sim.wait_for_prediction(prediction.id)["output"].startswith(f"{sim.url}/files/")


def test_webhooks_flow_while_the_create_waits(sim: ReplicateSimulator, receiver: Receiver) -> None:
    """In sync mode webhooks are not held for the answer (so completed may arrive first);
    the one asked for is sent once, and answered."""
    sim.client().models.predictions.create(
        MODEL,
        input={"duration": 1},
        webhook=f"{receiver.url}/hook",
        webhook_events_filter=["completed"],
        wait=True,
    )
    sim.wait_idle()
    (completed,) = sim.deliveries
    assert completed.event == "completed"
    assert completed.ok


def test_replicate_run_returns_file_outputs_of_data_uris(sim: ReplicateSimulator) -> None:
    """replicate.run (which sends Prefer: wait) gets a FileOutput that reads the audio."""
    output = sim.client().run(MODEL, input={"duration": 1})
    assert output.url.startswith("data:audio/mpeg;base64,")
    assert output.read()[:3] in (b"ID3", b"\xff\xfb", b"\xff\xf3")


@pytest.mark.parametrize("value", ["wait=0", "wait=61"])
def test_wait_outside_1_to_60_is_refused(sim: ReplicateSimulator, value: str) -> None:
    """Prefer: wait=n with n outside 1..60 answers 422 and books nothing."""
    response = httpx.post(
        f"{sim.url}/v1/models/{MODEL}/predictions",
        json={"input": {}},
        headers={"Authorization": f"Bearer {sim.api_token}", "Prefer": value},
    )
    assert response.status_code == 422
    assert "between 1 and 60" in response.json()["detail"]
    assert [record.prediction_id for record in sim.creates] == [None]


def test_the_prefer_header_is_read_as_documented() -> None:
    """wait alone is 60 s; wait=n is n; other preferences are ignored."""
    assert requested_wait({}) is None
    assert requested_wait({"Prefer": "wait"}) == 60.0
    assert requested_wait({"Prefer": "respond-async, wait=7"}) == 7.0
    assert requested_wait({"prefer": "return=minimal"}) is None
