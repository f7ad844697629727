"""The simulator's output files: real audio of the asked length and format."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from replicate_audio.audio import probe
from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing.simulator import MUSICGEN_VERSION

FRAME = 1152 / 44100  # one mp3 frame, the coarsest unit either format has


@pytest.mark.parametrize(
    ("key", "seconds", "output_format"),
    [("duration", 1.5, "mp3"), ("seconds_total", 2, "wav"), (None, 8.0, "mp3")],
)
def test_output_decodes_as_audio_of_the_requested_length(
    sim: ReplicateSimulator, tmp_path: Path, key: str | None, seconds: float, output_format: str
) -> None:
    """duration / seconds_total (default 8 s) and output_format shape the file served."""
    data: dict[str, object] = {"output_format": output_format}
    if key:
        data[key] = seconds
    prediction = sim.client().predictions.create(model="stability-ai/stable-audio-2.5", input=data)
    output = sim.wait_for_prediction(prediction.id)["output"]
    assert output.endswith(f".{output_format}")
    response = httpx.get(output)
    assert response.status_code == 200
    path = tmp_path / f"out.{output_format}"
    path.write_bytes(response.content)
    info = probe(path, exact=True)
    assert info.format == output_format
    assert abs(info.duration - seconds) <= FRAME
    assert sim.downloads[-1].status_code == 200


def test_output_as_a_list_when_the_model_says_so(sim: ReplicateSimulator) -> None:
    """A model added with output_as_list=True answers a list of one URL."""
    sim.add_model("acme/list", version="c" * 64, output_as_list=True, output_format="wav")
    prediction = sim.client().predictions.create(version="c" * 64, input={"duration": 0.5})
    output = sim.wait_for_prediction(prediction.id)["output"]
    assert isinstance(output, list)
    assert httpx.get(output[0]).headers["content-type"] == "audio/wav"


def test_musicgen_defaults_to_wav(sim: ReplicateSimulator) -> None:
    """The simulated meta/musicgen writes wav unless asked otherwise."""
    prediction = sim.client().predictions.create(version=MUSICGEN_VERSION, input={"duration": 1})
    assert sim.wait_for_prediction(prediction.id)["output"].endswith(".wav")


def test_no_file_before_success(sim: ReplicateSimulator) -> None:
    """An output path of an unfinished or unknown prediction is 404."""
    prediction = sim.client().predictions.create(model="stability-ai/stable-audio-2.5", input={})
    assert httpx.get(f"{sim.url}/files/{prediction.id}/output.mp3").status_code == 404
    assert httpx.get(f"{sim.url}/files/unknown/output.mp3").status_code == 404
