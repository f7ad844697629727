"""Prediction creation through the real replicate client: against the ReplicateSimulator, and
against a scripted loopback server for the answers the simulator does not give (402, 5xx)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from replicate_audio import (
    ConfigurationError,
    InvalidContentIdError,
    PredictionError,
    ReplicateAudioConfig,
    RetryPolicy,
    Settings,
    UnknownContentTypeError,
    acreate_webhook_prediction,
    create_webhook_prediction,
)
from replicate_audio.jobs import JobStatus
from replicate_audio.storage import MemoryStore, SQLiteStore
from replicate_audio.testing import Faults, ReplicateSimulator

VERSION = "671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


class FixtureReplicate(ThreadingHTTPServer):
    """Records every request and answers from a script of (status, headers, body)."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []
        self.script: list[tuple[int, dict[str, str], dict[str, Any]]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, str], dict[str, Any]]:
        if self.script:
            return self.script.pop(0)
        prediction = {
            "id": f"pred{len(self.requests) - 1}",
            "model": path,
            "version": body.get("version", "hidden"),
            "status": "starting",
            "input": body.get("input"),
            "output": None,
            "logs": "",
            "error": None,
            "metrics": {},
            "created_at": "2026-11-24T10:00:00Z",
            "urls": {"get": f"{self.url}/v1/predictions/pred"},
        }
        return 201, {}, prediction


class _Handler(BaseHTTPRequestHandler):
    server: FixtureReplicate

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        body = json.loads(raw or b"{}")
        self.server.requests.append(
            {"path": self.path, "headers": dict(self.headers), "body": body, "at": time.monotonic()}
        )
        status, headers, answer = self.server.answer(self.path, body)
        data = json.dumps(answer).encode()
        self.send_response(status)
        for name, value in {"content-type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[FixtureReplicate]:
    fixture = FixtureReplicate()
    thread = threading.Thread(target=fixture.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield fixture
    fixture.shutdown()
    fixture.server_close()


@pytest.fixture
def settings(server: FixtureReplicate) -> Settings:
    return Settings(
        base_url="https://app.example.com",
        api_token="r8_fixture_token",
        api_base_url=server.url,
        webhook_prefix="/hooks",
    )


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def problem(status: int, detail: str) -> dict[str, Any]:
    return {"title": "error", "detail": detail, "status": status}


@pytest.fixture
def sim_settings(simulator: ReplicateSimulator) -> Settings:
    return simulator.settings(base_url="https://app.example.com", webhook_prefix="/hooks")


def test_version_request_is_exact(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """A version prediction posts to /v1/predictions with input, webhook URL, filter and token,
    and the job is recorded before the call returns."""
    config = ReplicateAudioConfig(
        version=VERSION, input={"prompt": "rain on a tin roof", "duration": 5}, duration=4.0
    )
    job = create_webhook_prediction("sound_effect", 42, config, settings=sim_settings, store=store)
    (request,) = simulator.creates
    assert request.path == "/v1/predictions"
    headers = {name.lower(): value for name, value in request.headers.items()}
    assert headers["authorization"] == f"Bearer {simulator.api_token}"
    assert request.body == {
        "version": VERSION,
        "input": {"prompt": "rain on a tin roof", "duration": 5},
        "webhook": "https://app.example.com/hooks/replicate-webhook/sound_effect/42",
        "webhook_events_filter": ["start", "completed"],
    }
    assert (job.id, job.status, job.content_type, job.content_id) == (
        request.prediction_id,
        JobStatus.PENDING,
        "sound_effect",
        "42",
    )
    assert job.config == config
    assert store.get_job(job.id) == job


def test_model_request_uses_models_endpoint(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """An official model posts to /v1/models/{owner}/{name}/predictions without a version."""
    config = ReplicateAudioConfig(
        model="stability-ai/stable-audio-2.5",
        input={"prompt": "calm piano"},
        webhook_events_filter=("completed",),
    )
    create_webhook_prediction(
        "background_music", "text-7", config, settings=sim_settings, store=store
    )
    (request,) = simulator.creates
    assert request.path == "/v1/models/stability-ai/stable-audio-2.5/predictions"
    assert "version" not in request.body
    assert request.body["webhook_events_filter"] == ["completed"]
    assert request.body["webhook"].endswith("/replicate-webhook/background_music/text-7")


def test_async_create_records_the_job(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """acreate_webhook_prediction sends the same request from async code and records the job."""
    config = ReplicateAudioConfig(version=f"meta/musicgen:{VERSION}", input={"prompt": "x"})

    async def main() -> str:
        job = await acreate_webhook_prediction(
            "sound_effect", "a.b~c", config, settings=sim_settings, store=store
        )
        return job.id

    job_id = anyio.run(main)
    assert simulator.creates[0].body["version"] == f"meta/musicgen:{VERSION}"
    assert store.get_job(job_id) is not None


def test_default_store_is_the_configured_database(
    simulator: ReplicateSimulator, tmp_path: Path
) -> None:
    """Without a store, the job is recorded in REPLICATE_AUDIO_DATABASE's store."""
    settings = simulator.settings(database=str(tmp_path / "jobs.sqlite3"))
    config = ReplicateAudioConfig(model="stability-ai/stable-audio-2.5", input={})
    job = create_webhook_prediction("sound_effect", 1, config, settings=settings)
    assert SQLiteStore(tmp_path / "jobs.sqlite3").get_job(job.id) == job


def test_429_retried_after_retry_after(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """A 429 is retried once Retry-After has passed, then the prediction is created."""
    simulator.queue_faults(Faults(rate_limit_creates=2, retry_after=1))
    config = ReplicateAudioConfig(version=VERSION, input={})
    slow = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.2)
    job = create_webhook_prediction(
        "sound_effect", 1, config, settings=sim_settings, retry=slow, store=store
    )
    first, second, third = simulator.creates
    assert [first.status_code, second.status_code, third.status_code] == [429, 429, 201]
    assert third.time - first.time >= 0.35  # waited Retry-After twice, capped at max_delay
    assert job.id == third.prediction_id


def test_async_429_then_5xx_retried(server: FixtureReplicate, settings: Settings) -> None:
    """The async path retries 429 and 503 with backoff too."""
    server.script = [
        (429, {"Retry-After": "0"}, problem(429, "throttled")),
        (503, {}, problem(503, "unavailable")),
    ]
    config = ReplicateAudioConfig(version=VERSION, input={})

    async def main() -> str:
        job = await acreate_webhook_prediction(
            "sound_effect", 1, config, settings=settings, retry=FAST, store=MemoryStore()
        )
        return job.id

    assert anyio.run(main) == "pred2"
    assert len(server.requests) == 3


def test_retries_give_up(server: FixtureReplicate, settings: Settings) -> None:
    """After the last attempt the 5xx becomes a PredictionError with its status."""
    server.script = [(500, {}, problem(500, "boom"))] * 4
    config = ReplicateAudioConfig(version=VERSION, input={})
    with pytest.raises(PredictionError) as caught:
        create_webhook_prediction(
            "sound_effect", 1, config, settings=settings, retry=FAST, store=MemoryStore()
        )
    assert caught.value.status == 500
    assert len(server.requests) == 4


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (401, "You did not pass a valid authentication token"),
        (402, "You have reached the free time limit."),
        (404, "The requested resource could not be found."),
        (422, "Invalid version or not permitted"),
    ],
)
def test_client_errors_not_retried(
    server: FixtureReplicate, settings: Settings, status: int, detail: str
) -> None:
    """401/402/404/422 raise at once, carrying Replicate's detail."""
    server.script = [(status, {}, problem(status, detail))]
    config = ReplicateAudioConfig(version=VERSION, input={})
    with pytest.raises(PredictionError, match=detail) as caught:
        create_webhook_prediction(
            "sound_effect", 1, config, settings=settings, retry=FAST, store=MemoryStore()
        )
    assert (caught.value.status, caught.value.detail) == (status, detail)
    assert len(server.requests) == 1


@pytest.mark.parametrize("content_id", ["", "a/b", "x" * 129, "é", "a b", "../etc", ".", ".."])
def test_bad_content_id_refused_before_request(
    simulator: ReplicateSimulator, sim_settings: Settings, content_id: str
) -> None:
    """A content id that is not URL-safe is refused before anything is sent."""
    config = ReplicateAudioConfig(version=VERSION, input={})
    with pytest.raises(InvalidContentIdError):
        create_webhook_prediction("sound_effect", content_id, config, settings=sim_settings)
    assert simulator.creates == []


def test_unknown_content_type_refused_before_request(
    simulator: ReplicateSimulator, sim_settings: Settings
) -> None:
    """An unregistered content type is refused, naming the registered ones."""
    config = ReplicateAudioConfig(version=VERSION, input={})
    with pytest.raises(UnknownContentTypeError, match="sound_effect"):
        create_webhook_prediction("voiceover", 1, config, settings=sim_settings)
    assert simulator.creates == []


EFFECTS = ReplicateAudioConfig(model="stability-ai/stable-audio-2.5", input={})


@pytest.mark.parametrize(
    ("token", "config", "status"),
    [
        ("r8_wrong", EFFECTS, 401),
        (None, ReplicateAudioConfig(model="nobody/nothing", input={}), 404),
        (None, ReplicateAudioConfig(version="f" * 64, input={}), 422),
    ],
    ids=["wrong-token", "unknown-model", "unknown-version"],
)
def test_simulator_refusals_become_prediction_errors(
    simulator: ReplicateSimulator,
    store: MemoryStore,
    token: str | None,
    config: ReplicateAudioConfig,
    status: int,
) -> None:
    """A wrong token, an unknown model or an unknown version raise PredictionError at once."""
    settings = simulator.settings(api_token=token or simulator.api_token)
    with pytest.raises(PredictionError) as caught:
        create_webhook_prediction("sound_effect", 1, config, settings=settings, store=store)
    assert caught.value.status == status
    assert caught.value.detail
    assert store.list_jobs() == []


def test_unreachable_replicate_is_a_prediction_error() -> None:
    """A refused connection is retried, then reported as PredictionError."""
    settings = Settings(api_token="t", api_base_url="http://127.0.0.1:9")
    config = ReplicateAudioConfig(version=VERSION, input={})
    with pytest.raises(PredictionError, match="could not reach"):
        create_webhook_prediction(
            "sound_effect", 1, config, settings=settings, retry=FAST, store=MemoryStore()
        )


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"version": VERSION, "model": "a/b"},
        {"version": "abc"},
        {"model": "no-slash"},
        {"model": "a/b", "input": {"x": object()}},
        {"model": "a/b", "webhook_events_filter": ("done",)},
        {"model": "a/b", "duration": -1},
    ],
)
def test_config_validation(kwargs: dict[str, Any]) -> None:
    """ReplicateAudioConfig refuses impossible combinations with a ConfigurationError."""
    with pytest.raises(ConfigurationError):
        ReplicateAudioConfig(**kwargs)


def test_config_round_trips_through_dict() -> None:
    """to_dict/from_dict keep every field, so a job can be run again."""
    config = ReplicateAudioConfig(model="a/b", input={"p": [1, 2]}, duration=2.5)
    assert ReplicateAudioConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
