"""The simulator's models, versions and deployments, through the real replicate client."""

from __future__ import annotations

import pytest
from replicate.exceptions import ReplicateError

from replicate_audio.errors import ConfigurationError
from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing.simulator import MUSICGEN_VERSION

STABLE_AUDIO = "stability-ai/stable-audio-2.5"


def test_models_get_shows_the_latest_version_and_its_schema(sim: ReplicateSimulator) -> None:
    """models.get reads owner, name and latest_version with an OpenAPI schema."""
    model = sim.client().models.get("meta/musicgen")
    assert (model.owner, model.name, model.visibility) == ("meta", "musicgen", "public")
    assert model.latest_version is not None
    assert model.latest_version.id == MUSICGEN_VERSION
    schemas = model.latest_version.openapi_schema["components"]["schemas"]
    assert schemas["Output"]["format"] == "uri"
    assert "prompt" in schemas["Input"]["properties"]


def test_versions_get_and_list(sim: ReplicateSimulator) -> None:
    """versions.get answers the version; versions.list pages its versions."""
    versions = sim.client().models.get("meta/musicgen").versions
    assert versions.get(MUSICGEN_VERSION).cog_version
    assert [v.id for v in versions.list().results] == [MUSICGEN_VERSION]
    with pytest.raises(ReplicateError) as caught:
        versions.get("0" * 64)
    assert caught.value.status == 404


def test_an_official_model_has_no_listed_version(sim: ReplicateSimulator) -> None:
    """stable-audio-2.5 is run by model: no latest_version, an empty versions list."""
    model = sim.client().models.get(STABLE_AUDIO)
    assert model.latest_version is None
    assert model.versions.list().results == []


def test_an_unknown_model_is_404(sim: ReplicateSimulator) -> None:
    """models.get of a model nobody added answers 404."""
    with pytest.raises(ReplicateError) as caught:
        sim.client().models.get("nobody/nothing")
    assert caught.value.status == 404


def test_run_by_version_end_to_end(sim: ReplicateSimulator) -> None:
    """replicate.run("meta/musicgen:<version>") creates in sync mode (Prefer: wait), reads the
    version's schema, and returns the wav as a FileOutput of a data: URI."""
    output = sim.client().run(
        f"meta/musicgen:{MUSICGEN_VERSION}", input={"prompt": "lo-fi", "duration": 1}
    )
    assert output.url.startswith("data:audio/wav;base64,")
    assert output.read()[:4] == b"RIFF"
    (create,) = sim.creates
    assert (create.path, create.body["version"]) == ("/v1/predictions", MUSICGEN_VERSION)


def test_run_an_official_model_end_to_end(sim: ReplicateSimulator) -> None:
    """replicate.run("stability-ai/stable-audio-2.5") creates by model and returns its mp3."""
    output = sim.client().run(STABLE_AUDIO, input={"prompt": "rain", "duration": 1})
    assert output.url.startswith("data:audio/mpeg;base64,")
    assert sim.creates[0].path == f"/v1/models/{STABLE_AUDIO}/predictions"


def test_create_with_an_official_model_as_version(sim: ReplicateSimulator) -> None:
    """POST /v1/predictions with version "owner/name" runs that official model."""
    prediction = sim.client().predictions.create(version=STABLE_AUDIO, input={"duration": 1})
    assert prediction.model == STABLE_AUDIO
    assert sim.wait_for_prediction(prediction.id)["status"] == "succeeded"
    with pytest.raises(ReplicateError) as caught:
        sim.client().predictions.create(version="nobody/nothing", input={})
    assert caught.value.status == 422


def test_create_through_a_deployment(sim: ReplicateSimulator) -> None:
    """A deployment runs its model; the prediction names the deployment; unknown ones 404."""
    sim.add_deployment("acme/sfx", model=STABLE_AUDIO)
    client = sim.client()
    prediction = client.deployments.predictions.create("acme/sfx", input={"duration": 1})
    shown = sim.wait_for_prediction(prediction.id)
    assert (shown["model"], shown["deployment"], shown["status"]) == (
        STABLE_AUDIO,
        "acme/sfx",
        "succeeded",
    )
    with pytest.raises(ReplicateError) as caught:
        client.deployments.predictions.create("acme/nothing", input={})
    assert caught.value.status == 404


def test_a_deployment_needs_a_served_model() -> None:
    """add_deployment of a model not served is a ConfigurationError."""
    with pytest.raises(ConfigurationError, match="model"):
        ReplicateSimulator().add_deployment("acme/sfx", model="nobody/nothing")
