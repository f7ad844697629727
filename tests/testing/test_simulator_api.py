"""The simulator's API, driven by the real ``replicate`` client."""

from __future__ import annotations

import re

import anyio
import httpx
import pytest
from replicate.client import Client
from replicate.exceptions import ReplicateError

from replicate_audio.config import AllowedOrigin
from replicate_audio.errors import PredictionError
from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing.simulator import MUSICGEN_VERSION

MODEL = "stability-ai/stable-audio-2.5"


def test_client_creates_by_model_and_gets_the_final_state(sim: ReplicateSimulator) -> None:
    """A model create answers 201-shaped 'starting', and GET later shows 'succeeded'."""
    client = sim.client()
    prediction = client.predictions.create(model=MODEL, input={"prompt": "rain", "duration": 1})
    assert prediction.status == "starting"
    assert re.fullmatch(r"[a-z2-7]{26}", prediction.id)
    assert prediction.urls is not None
    assert prediction.urls["get"] == f"{sim.url}/v1/predictions/{prediction.id}"
    assert sim.creates[0].status_code == 201
    sim.wait_for_prediction(prediction.id)
    done = client.predictions.get(prediction.id)
    assert done.status == "succeeded"
    assert done.metrics is not None
    assert done.metrics["predict_time"] > 0
    assert done.started_at is not None
    assert done.completed_at is not None
    assert done.output == f"{sim.url}/files/{prediction.id}/output.mp3"


def test_client_creates_by_version_in_both_spellings(sim: ReplicateSimulator) -> None:
    """A bare 64-hex version and owner/name:version both reach meta/musicgen."""
    client = sim.client()
    for version in (MUSICGEN_VERSION, f"meta/musicgen:{MUSICGEN_VERSION}"):
        prediction = client.predictions.create(version=version, input={"duration": 1})
        assert prediction.model == "meta/musicgen"
        assert prediction.version == MUSICGEN_VERSION


def test_client_cancels_a_running_prediction(sim: ReplicateSimulator) -> None:
    """Cancel moves a running prediction to 'canceled' for good."""
    sim.add_model("acme/slow", version="a" * 64, run_time=5.0)
    client = sim.client()
    prediction = client.predictions.create(version="a" * 64, input={})
    canceled = client.predictions.cancel(prediction.id)
    assert canceled.status == "canceled"
    assert client.predictions.get(prediction.id).status == "canceled"


def test_a_wrong_token_is_refused_with_401(sim: ReplicateSimulator) -> None:
    """A missing or wrong bearer token gets 401 problem details."""
    response = httpx.get(f"{sim.url}/v1/webhooks/default/secret")
    assert response.status_code == 401
    assert response.json()["title"] == "Unauthenticated"
    with pytest.raises(ReplicateError) as raised:
        Client(api_token="nope", base_url=sim.url).predictions.get("x")
    assert raised.value.status == 401


def test_unknown_model_is_404_and_unknown_version_is_422(sim: ReplicateSimulator) -> None:
    """Unknown names and versions are refused the way Replicate refuses them."""
    client = sim.client()
    with pytest.raises(ReplicateError) as missing:
        client.predictions.create(model="nobody/nothing", input={})
    assert missing.value.status == 404
    with pytest.raises(ReplicateError) as invalid:
        client.predictions.create(version="b" * 64, input={})
    assert invalid.value.status == 422
    assert "version" in (invalid.value.title or "").lower()
    assert [c.status_code for c in sim.creates] == [404, 422]


def test_bad_input_is_422(sim: ReplicateSimulator) -> None:
    """A negative duration or an unknown output_format is an input validation error."""
    client = sim.client()
    for bad in ({"duration": -1}, {"output_format": "aiff"}, {"seconds_total": "long"}):
        with pytest.raises(ReplicateError) as raised:
            client.predictions.create(model=MODEL, input=bad)
        assert raised.value.status == 422


def test_get_of_an_unknown_prediction_is_404(sim: ReplicateSimulator) -> None:
    """GET of an id that was never created is 404, and get_prediction raises PredictionError."""
    with pytest.raises(ReplicateError) as raised:
        sim.client().predictions.get("doesnotexist")
    assert raised.value.status == 404
    with pytest.raises(PredictionError):
        sim.get_prediction("doesnotexist")


def test_secret_endpoint_returns_the_signing_secret(sim: ReplicateSimulator) -> None:
    """GET /v1/webhooks/default/secret answers the simulator's whsec_ secret."""
    assert sim.client().webhooks.default.secret().key == sim.secret


def test_creates_are_recorded_with_body_and_headers(sim: ReplicateSimulator) -> None:
    """Each create is kept with its JSON body and headers for assertions."""
    sim.client().predictions.create(
        model=MODEL, input={"prompt": "x"}, webhook="http://127.0.0.1:9/hook"
    )
    record = sim.creates[0]
    assert record.path == f"/v1/models/{MODEL}/predictions"
    assert record.body["webhook"] == "http://127.0.0.1:9/hook"
    assert record.headers["Authorization"] == f"Bearer {sim.api_token}"


def test_settings_point_at_the_simulator(sim: ReplicateSimulator) -> None:
    """settings() carries the URL, token, secret and an allow-list for the output files."""
    settings = sim.settings(base_url="http://127.0.0.1:8000")
    assert settings.api_base_url == sim.url
    assert settings.api_token == sim.api_token
    assert settings.webhook_secrets == (sim.secret,)
    assert settings.allowed_output_hosts == (AllowedOrigin.parse(sim.url),)
    assert settings.allow_private_output_hosts
    assert settings.base_url == "http://127.0.0.1:8000"


def test_chosen_port_and_async_form() -> None:
    """`async with` starts and stops it, on the port asked for."""

    async def main() -> int:
        with socket_port() as port:
            pass
        async with ReplicateSimulator(port=port) as sim:
            assert sim.url == f"http://127.0.0.1:{port}"
            async with httpx.AsyncClient() as http:
                response = await http.get(
                    f"{sim.url}/v1/webhooks/default/secret",
                    headers={"Authorization": f"Bearer {sim.api_token}"},
                )
            return response.status_code

    assert anyio.run(main) == 200


def socket_port() -> _PortContext:
    """A free port number, released for the simulator to take."""
    return _PortContext()


class _PortContext:
    def __enter__(self) -> int:
        import socket

        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        port: int = self._socket.getsockname()[1]
        return port

    def __exit__(self, *exc: object) -> None:
        self._socket.close()
