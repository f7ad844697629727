"""The simulator's data retention: input, output, logs and files go a set time after the end."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from replicate_audio.errors import ConfigurationError
from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing.simulator import RETENTION

MODEL = "stability-ai/stable-audio-2.5"


def _get(sim: ReplicateSimulator, path: str) -> dict[str, Any]:
    """GET an API path as JSON (the replicate client's Prediction has no data_removed)."""
    headers = {"Authorization": f"Bearer {sim.api_token}"}
    response = httpx.get(f"{sim.url}{path}", headers=headers)
    response.raise_for_status()
    data: dict[str, Any] = response.json()
    return data


@pytest.fixture
def short_lived() -> Iterator[ReplicateSimulator]:
    """A simulator that removes a prediction's data 0.5 s after it completes."""
    with ReplicateSimulator(run_time=0.05, retention=0.5) as simulator:
        yield simulator


def test_the_default_retention_is_an_hour() -> None:
    """Replicate removes API predictions' data after an hour."""
    assert RETENTION == 3600.0


def test_get_shows_the_data_until_retention_then_data_removed(
    short_lived: ReplicateSimulator,
) -> None:
    """Right after the end GET has input, output and logs; once the retention has passed it
    shows data_removed with them gone, the rest (status, times, metrics) kept."""
    client = short_lived.client()
    prediction = client.predictions.create(model=MODEL, input={"prompt": "rain", "duration": 1})
    fresh = short_lived.wait_for_prediction(prediction.id)
    assert fresh["data_removed"] is False
    assert fresh["input"] == {"prompt": "rain", "duration": 1}
    url = fresh["output"]
    assert httpx.get(url).status_code == 200

    path = f"/v1/predictions/{prediction.id}"
    short_lived.wait_until(lambda: _get(short_lived, path)["data_removed"], timeout=5)
    gone = _get(short_lived, path)
    assert (gone["output"], gone["input"], gone["logs"]) == (None, {}, None)
    assert gone["status"] == "succeeded"
    assert gone["completed_at"] == fresh["completed_at"]
    assert gone["metrics"] == fresh["metrics"]
    assert client.predictions.get(prediction.id).output is None  # the real client reads it
    response = httpx.get(url)
    assert response.status_code == 410
    assert "data_removed" in response.text


def test_the_list_shows_removed_predictions_too(short_lived: ReplicateSimulator) -> None:
    """A listed prediction past its retention has data_removed and no output or input."""
    client = short_lived.client()
    prediction = client.predictions.create(model=MODEL, input={"duration": 1})
    short_lived.wait_for_prediction(prediction.id)
    short_lived.wait_until(lambda: short_lived.get_prediction(prediction.id)["data_removed"])
    (listed,) = _get(short_lived, "/v1/predictions")["results"]
    shown = (listed["id"], listed["data_removed"], listed["output"], listed["input"])
    assert shown == (prediction.id, True, None, {})
    assert client.predictions.list().results[0].output is None


def test_a_running_prediction_is_never_removed(short_lived: ReplicateSimulator) -> None:
    """Retention counts from completion: a prediction still running keeps its input."""
    short_lived.add_model(MODEL, run_time=1.5)
    prediction = short_lived.client().predictions.create(model=MODEL, input={"duration": 1})
    short_lived.wait_until(
        lambda: short_lived.get_prediction(prediction.id)["status"] == "processing"
    )
    shown = short_lived.get_prediction(prediction.id)
    assert (shown["data_removed"], shown["input"]) == (False, {"duration": 1})


@pytest.mark.parametrize("retention", [0, -1.0])
def test_retention_must_be_positive(retention: float) -> None:
    """A retention of zero or less is a ConfigurationError naming the option."""
    with pytest.raises(ConfigurationError, match="retention"):
        ReplicateSimulator(retention=retention)
