"""Prediction creation through the real replicate client against the ReplicateSimulator:
exact requests, retries of 429 and 5xx, and refusals."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
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
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.storage import MemoryStore, SQLiteStore, Store
from replicate_audio.testing import Faults, ReplicateSimulator

VERSION = "671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"
FAST = RetryPolicy(attempts=4, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def stored(store: Store, job_id: str) -> Job | None:
    """The job as *store* has it, read from this test's thread."""
    return anyio.run(store.get_job, job_id)


def jobs_in(store: Store) -> list[Job]:
    return anyio.run(store.list_jobs)


@pytest.fixture
def sim_settings(simulator: ReplicateSimulator) -> Settings:
    return simulator.settings(base_url="https://app.example.com", webhook_prefix="/hooks")


def test_version_request_is_exact(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """A version prediction posts to /v1/predictions with input, webhook URL (naming the job's
    own id), filter and token; the job is returned pending with its prediction id, as stored."""
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
        "webhook": f"https://app.example.com/hooks/replicate-webhook/sound_effect/42?job={job.id}",
        "webhook_events_filter": ["start", "completed"],
    }
    assert (job.prediction_id, job.status, job.content_type, job.content_id) == (
        request.prediction_id,
        JobStatus.PENDING,
        "sound_effect",
        "42",
    )
    assert job.id != job.prediction_id
    assert job.config == config
    assert stored(store, job.id) == job
    assert stored(store, request.prediction_id) == job  # found by either id


class WatchingStore(MemoryStore):
    """Remembers how many creates the simulator had seen when each job was recorded."""

    def __init__(self, simulator: ReplicateSimulator) -> None:
        super().__init__()
        self.simulator = simulator
        self.creates_seen: list[int] = []

    async def create_job(self, job: Job) -> Job:
        self.creates_seen.append(len(self.simulator.creates))
        return await super().create_job(job)


@pytest.mark.parametrize("form", ["sync", "async"])
def test_the_job_is_recorded_before_the_create_is_sent(
    simulator: ReplicateSimulator, sim_settings: Settings, form: str
) -> None:
    """The job is recorded, creating, under an id of the library's own before Replicate hears
    of it, so a delivery that outruns the create's answer (or a process that dies meanwhile)
    still has a job to find."""
    store = WatchingStore(simulator)
    config = ReplicateAudioConfig(version=VERSION, input={})
    if form == "sync":
        job = create_webhook_prediction(
            "sound_effect", 1, config, settings=sim_settings, store=store
        )
    else:
        job = anyio.run(
            lambda: acreate_webhook_prediction(
                "sound_effect", 1, config, settings=sim_settings, store=store
            )
        )
    assert store.creates_seen == [0]
    assert len(simulator.creates) == 1
    assert len(job.id) == 22
    assert (job.status, job.prediction_id) == (
        JobStatus.PENDING,
        simulator.creates[0].prediction_id,
    )


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
    (job,) = jobs_in(store)
    assert request.body["webhook"].endswith(
        f"/replicate-webhook/background_music/text-7?job={job.id}"
    )


def test_async_create_records_the_job(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """acreate_webhook_prediction sends the same request from async code and records the job."""
    config = ReplicateAudioConfig(version=f"meta/musicgen:{VERSION}", input={"prompt": "x"})

    async def main() -> Job:
        return await acreate_webhook_prediction(
            "sound_effect", "a.b~c", config, settings=sim_settings, store=store
        )

    job = anyio.run(main)
    (request,) = simulator.creates
    assert request.body["version"] == f"meta/musicgen:{VERSION}"
    assert request.body["webhook"].endswith(f"/sound_effect/a.b~c?job={job.id}")
    assert (job.status, job.prediction_id) == (JobStatus.PENDING, request.prediction_id)
    assert stored(store, job.id) == job


def test_default_store_is_the_configured_database(
    simulator: ReplicateSimulator, tmp_path: Path
) -> None:
    """Without a store, the job is recorded in REPLICATE_AUDIO_DATABASE's store."""
    settings = simulator.settings(database=str(tmp_path / "jobs.sqlite3"))
    config = ReplicateAudioConfig(model="stability-ai/stable-audio-2.5", input={})
    job = create_webhook_prediction("sound_effect", 1, config, settings=settings)
    with SQLiteStore(tmp_path / "jobs.sqlite3") as store:
        assert stored(store, job.id) == job


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
    # Waited Retry-After twice, capped at max_delay (0.2 s), not the full 1 s.
    assert 0.35 <= third.time - first.time < 1.0
    assert job.prediction_id == third.prediction_id


def test_async_429_then_5xx_retried(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """The async path retries 429, 503 and a CDN's 522 with backoff too."""
    simulator.queue_faults(Faults(rate_limit_creates=1, retry_after=0, create_errors=(503, 522)))
    config = ReplicateAudioConfig(version=VERSION, input={})

    async def main() -> str | None:
        job = await acreate_webhook_prediction(
            "sound_effect", 1, config, settings=sim_settings, retry=FAST, store=store
        )
        return job.prediction_id

    prediction_id = anyio.run(main)
    assert [create.status_code for create in simulator.creates] == [429, 503, 522, 201]
    assert prediction_id == simulator.creates[-1].prediction_id


def test_retries_give_up(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """After the last attempt the 5xx becomes a PredictionError with its status, and the job
    is failed with the reason."""
    simulator.queue_faults(Faults(create_errors=(500,) * 4))
    config = ReplicateAudioConfig(version=VERSION, input={})
    with pytest.raises(PredictionError) as caught:
        create_webhook_prediction(
            "sound_effect", 1, config, settings=sim_settings, retry=FAST, store=store
        )
    assert caught.value.status == 500
    assert caught.value.detail == "Something went wrong on our end. Please try again."
    assert len(simulator.creates) == 4
    (job,) = jobs_in(store)
    assert (job.status, job.prediction_id) == (JobStatus.FAILED, None)
    assert "Something went wrong on our end" in (job.error or "")


@pytest.mark.parametrize(
    ("status", "detail"),
    [
        (401, "You did not pass a valid authentication token"),
        (402, "You have reached the free time limit."),
        (404, "The requested resource could not be found."),
        (422, "Invalid version or not permitted"),
        (501, "Not Implemented. Please try again."),
    ],
)
def test_client_errors_not_retried(
    simulator: ReplicateSimulator, sim_settings: Settings, status: int, detail: str
) -> None:
    """401/402/404/422 (and a 501, which no retry changes) raise at once with Replicate's
    detail."""
    simulator.queue_faults(Faults(create_errors=(status,)))
    config = ReplicateAudioConfig(version=VERSION, input={})
    with pytest.raises(PredictionError, match=detail) as caught:
        create_webhook_prediction(
            "sound_effect", 1, config, settings=sim_settings, retry=FAST, store=MemoryStore()
        )
    assert caught.value.status == status
    assert caught.value.detail is not None
    assert caught.value.detail.startswith(detail)
    assert len(simulator.creates) == 1


def test_retry_policy_backs_off_within_its_cap() -> None:
    """Each delay lies in [ceiling/2, ceiling], the ceiling doubling up to max_delay; a
    Retry-After is honoured but capped, and never negative."""
    policy = RetryPolicy(attempts=10, base_delay=0.5, max_delay=4.0)
    for attempt in range(1, 10):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        delays = [policy.delay(attempt, retry_after=None) for _ in range(200)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays), attempt
        assert len(set(delays)) > 1  # jittered
    assert policy.delay(1, retry_after=2.5) == 2.5
    assert policy.delay(1, retry_after=60) == 4.0
    assert policy.delay(1, retry_after=-3) == 0.0


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
    """A wrong token, an unknown model or an unknown version raise PredictionError at once;
    the job, recorded before the create, is failed with Replicate's reason."""
    settings = simulator.settings(api_token=token or simulator.api_token)
    with pytest.raises(PredictionError) as caught:
        create_webhook_prediction("sound_effect", 1, config, settings=settings, store=store)
    assert caught.value.status == status
    assert caught.value.detail
    (job,) = jobs_in(store)
    assert (job.status, job.prediction_id, job.config) == (JobStatus.FAILED, None, config)
    assert f"could not be created: Replicate refused the prediction ({status})" in (job.error or "")
    assert caught.value.detail in (job.error or "")


def test_unreachable_replicate_is_a_prediction_error(store: MemoryStore) -> None:
    """A refused connection (the request never left) is retried, then reported as
    PredictionError, and the job is failed."""
    settings = Settings(api_token="t", api_base_url="http://127.0.0.1:9")
    config = ReplicateAudioConfig(version=VERSION, input={})
    with pytest.raises(PredictionError, match="could not reach"):
        create_webhook_prediction(
            "sound_effect", 1, config, settings=settings, retry=FAST, store=store
        )
    (job,) = jobs_in(store)
    assert job.status is JobStatus.FAILED
    assert "could not reach Replicate" in (job.error or "")


@pytest.fixture
def hangs_up() -> Iterator[tuple[str, list[bytes]]]:
    """An API that reads each request whole and closes the connection without answering:
    the create may have reached Replicate, and nobody can tell."""
    server = socket.create_server(("127.0.0.1", 0))
    requests: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += connection.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = next(
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                while len(body) < length:
                    body += connection.recv(65536)
                requests.append(body)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}", requests
    server.close()
    thread.join(timeout=5)


@pytest.mark.parametrize("form", ["sync", "async"])
def test_a_create_without_an_answer_leaves_the_job_creating(
    hangs_up: tuple[str, list[bytes]], store: MemoryStore, form: str
) -> None:
    """A create sent but never answered is not retried (that could create it twice) and not
    failed: the job is returned still creating, for the sweep to resolve."""
    url, requests = hangs_up
    settings = Settings(api_token="t", api_base_url=url)
    config = ReplicateAudioConfig(version=VERSION, input={"prompt": "x"})
    if form == "sync":
        job = create_webhook_prediction(
            "sound_effect", 1, config, settings=settings, retry=FAST, store=store
        )
    else:
        job = anyio.run(
            lambda: acreate_webhook_prediction(
                "sound_effect", 1, config, settings=settings, retry=FAST, store=store
            )
        )
    assert (job.status, job.prediction_id, job.error) == (JobStatus.CREATING, None, None)
    assert stored(store, job.id) == job
    (body,) = requests
    assert json.loads(body)["webhook"].endswith(f"?job={job.id}")


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


def test_facade_generate_takes_a_retry_policy(
    simulator: ReplicateSimulator, sim_settings: Settings, store: MemoryStore
) -> None:
    """ReplicateAudio.generate_sync and generate pass retry= on, as the functions take it."""
    from replicate_audio.app import ReplicateAudio

    audio = ReplicateAudio(sim_settings, store, sweep_interval=0)
    config = ReplicateAudioConfig(version=VERSION, input={})
    simulator.queue_faults(Faults(create_errors=(503,)))
    with pytest.raises(PredictionError):
        audio.generate_sync("sound_effect", 1, config, retry=RetryPolicy(attempts=1))
    simulator.queue_faults(Faults(create_errors=(503,)))
    job = anyio.run(lambda: audio.generate("sound_effect", 2, config, retry=FAST))
    assert [create.status_code for create in simulator.creates] == [503, 503, 201]
    assert job.prediction_id == simulator.creates[-1].prediction_id
