"""The processing pipeline end to end: simulator -> signed webhook -> download -> trim -> store."""

from __future__ import annotations

import functools
import json
import multiprocessing
import tempfile
import threading
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import attrs
import httpx
import pytest

from dispatchers import HeldDispatcher
from replicate_audio import (
    AudioPostProcessor,
    Job,
    JobStatus,
    ProcessingContext,
    ReplicateAudioConfig,
    Settings,
)
from replicate_audio.app import ReplicateAudio
from replicate_audio.audio import probe
from replicate_audio.download import Downloader
from replicate_audio.errors import ConfigurationError
from replicate_audio.pipeline import process_webhook_result, register_processor
from replicate_audio.processors import default_processors
from replicate_audio.storage import (
    AudioInfo,
    BlockingStore,
    LogEntry,
    MemoryStore,
    SQLiteStore,
    Store,
    StoredAudio,
    SyncStore,
)
from replicate_audio.testing import Faults, ReplicateSimulator, sign_webhook
from webhook_receiver import WebhookReceiver

MP3_FRAME = 1152 / 44100
EFFECT_MODEL = "stability-ai/stable-audio-2.5"
MUSIC_VERSION = "meta/musicgen:671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"
SUPERSEDED = "a newer job's audio for this content was kept instead"


def effect(duration: float = 2.0, generated: float = 3.0) -> ReplicateAudioConfig:
    return ReplicateAudioConfig(
        model=EFFECT_MODEL,
        input={"prompt": "a door slams", "duration": generated},
        duration=duration,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "jobs.sqlite3")
    yield sqlite
    sqlite.close()


@pytest.fixture
def blocking(store: SQLiteStore) -> Iterator[SyncStore]:
    """The test's own view of *store*, from code with no event loop."""
    with SyncStore(store) as sync:
        yield sync


def start(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: Store | BlockingStore,
    *,
    processors: dict[str, AudioPostProcessor] | None = None,
    downloader_options: dict[str, Any] | None = None,
    **settings: Any,
) -> ReplicateAudio:
    config = simulator.settings(base_url=receiver.url, **settings)
    downloader = Downloader(config, backoff=0.01, max_backoff=0.05, **(downloader_options or {}))
    audio = ReplicateAudio(
        config, store, processors=processors, downloader=downloader, sweep_interval=0
    )
    receiver.serve(audio)
    return audio


def prediction_of(job: Job) -> str:
    """*job*'s prediction id, which every job returned by generate() has."""
    assert job.prediction_id is not None, job
    return job.prediction_id


def stored_duration(
    audio: ReplicateAudio, receiver: WebhookReceiver, content: str, tmp: Path
) -> tuple[StoredAudio, AudioInfo]:
    stored = receiver.call(audio.get_audio, *content.split(":"))
    assert stored is not None, f"no audio stored for {content}"
    path = tmp / f"stored.{stored.format}"
    path.write_bytes(stored.data)
    return stored, probe(path, exact=True)


def test_sound_effect_end_to_end(
    simulator: ReplicateSimulator,
    store: SQLiteStore,
    blocking: SyncStore,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    """A sound effect is generated, delivered, downloaded, trimmed to 2 s and stored once,
    under the library's own job id (its webhook URL names it; its prediction id is apart)."""
    audio = start(simulator, receiver, store)
    job = receiver.call(audio.generate, "sound_effect", "fx-1", effect(2.0, generated=3.0))
    # Pending, or further: a 50 ms model's webhooks may be recorded before the create's
    # answer is attached (they leave once it was sent); never still creating.
    assert job.status is not JobStatus.CREATING
    (create,) = simulator.creates
    assert (job.prediction_id, create.status_code) == (create.prediction_id, 201)
    assert job.id != job.prediction_id
    assert create.body["webhook"] == (
        f"{receiver.url}/api/replicate-webhook/sound_effect/fx-1?job={job.id}"
    )
    done = receiver.wait_for(job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert done.prediction_id == job.prediction_id
    stored, info = stored_duration(audio, receiver, "sound_effect:fx-1", tmp_path)
    assert abs(info.duration - 2.0) <= MP3_FRAME
    assert (stored.format, stored.job_id, stored.size) == ("mp3", job.id, len(stored.data))
    logs = blocking.list_logs(job.id)
    assert [entry.status for entry in logs] == [JobStatus.COMPLETED]
    assert len([d for d in simulator.downloads if d.status_code == 200]) == 1


def test_background_music_is_not_trimmed(
    simulator: ReplicateSimulator, store: SQLiteStore, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    """Background music is stored whole, in the format the model produced (wav)."""
    audio = start(simulator, receiver, store)
    config = ReplicateAudioConfig(version=MUSIC_VERSION, input={"prompt": "calm", "duration": 5})
    job = receiver.call(audio.generate, "background_music", "7", config)
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED
    stored, info = stored_duration(audio, receiver, "background_music:7", tmp_path)
    assert stored.format == "wav"
    assert abs(info.duration - 5.0) <= MP3_FRAME


def test_duplicates_and_out_of_order_store_once(
    simulator: ReplicateSimulator,
    store: SQLiteStore,
    blocking: SyncStore,
    receiver: WebhookReceiver,
) -> None:
    """Three copies of every webhook, in any order: one download, one store, one log line."""
    audio = start(simulator, receiver, store)
    simulator.queue_faults(Faults(duplicates=3, out_of_order=True))
    job = receiver.call(audio.generate, "sound_effect", "dup", effect(1.0, 2.0))
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED
    simulator.wait_idle()
    prediction_id = prediction_of(job)
    delivered = [d for d in simulator.deliveries if d.prediction_id == prediction_id and d.ok]
    assert len(delivered) >= 6  # start and completed, three copies each
    assert len([d for d in simulator.downloads if d.prediction_id == prediction_id]) == 1
    assert [e.status for e in blocking.list_logs(job.id)] == [JobStatus.COMPLETED]


def settle(simulator: ReplicateSimulator, receiver: WebhookReceiver) -> Job:
    """Create a prediction whose webhooks are all dropped, and wait for it to finish."""
    simulator.queue_faults(Faults(drop_ratio=1.0))
    job: Job = receiver.call(receiver.audio.generate, "sound_effect", "race", effect(1.0, 2.0))
    simulator.wait_for_prediction(prediction_of(job))
    return job


def post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers=headers, timeout=10)


def webhook_url(receiver: WebhookReceiver, job: Job) -> str:
    """The URL Replicate calls for *job*, as generate() gave it."""
    return f"{receiver.url}/api/replicate-webhook/{job.content_type}/{job.content_id}?job={job.id}"


@pytest.mark.parametrize("same_id", [True, False], ids=["same-webhook-id", "five-webhook-ids"])
def test_five_concurrent_deliveries_store_once(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
    same_id: bool,
) -> None:
    """Five deliveries of the same success, at the same moment on five threads: stored once."""
    audio = start(simulator, receiver, store)
    job = settle(simulator, receiver)
    body = json.dumps(simulator.get_prediction(prediction_of(job))).encode()
    answers: list[httpx.Response] = []
    barrier = threading.Barrier(5)

    def deliver(n: int) -> None:
        headers = sign_webhook(body, simulator.secret, webhook_id="msg_same" if same_id else None)
        barrier.wait()
        answers.append(post(webhook_url(receiver, job), body, headers))

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 5
    assert {(a.json()["job"], a.json()["prediction"]) for a in answers} == {
        (job.id, job.prediction_id)
    }
    if same_id:
        assert sorted(a.json()["duplicate"] for a in answers) == [False, True, True, True, True]
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED
    assert len([d for d in simulator.downloads if d.prediction_id == job.prediction_id]) == 1
    assert [e.status for e in blocking.list_logs(job.id)] == [JobStatus.COMPLETED]
    assert audio is receiver.audio


def _process_in_child(settings: dict[str, Any], url: str, prediction: dict[str, Any]) -> str:
    from replicate_audio.storage import SQLAlchemyStore

    async def main() -> str:
        store = SQLAlchemyStore(url, table_prefix=settings.pop("table_prefix"))
        async with Downloader(Settings(**settings)) as downloader:
            job = await process_webhook_result(
                "sound_effect",
                "race",
                prediction,
                store=store,
                downloader=downloader,
                webhook_id="msg_same",
            )
        store.close()
        return job.status.value

    return anyio.run(main)


@pytest.mark.postgres
def test_two_processes_on_postgres_store_once(
    simulator: ReplicateSimulator, receiver: WebhookReceiver, postgres_url: str
) -> None:
    """Two processes handling the same delivery against PostgreSQL: one download, one store."""
    from replicate_audio.storage import SQLAlchemyStore

    prefix = f"t{uuid.uuid4().hex[:8]}_"
    store = SQLAlchemyStore(postgres_url, table_prefix=prefix)
    try:
        start(simulator, receiver, store)
        job = settle(simulator, receiver)
        prediction = simulator.get_prediction(prediction_of(job))
        settings = attrs.asdict(simulator.settings(), recurse=False)
        settings |= {"table_prefix": prefix}
        context = multiprocessing.get_context("spawn")
        with context.Pool(2) as pool:
            results = [
                pool.apply_async(_process_in_child, (dict(settings), postgres_url, prediction))
                for _ in range(2)
            ]
            statuses = [result.get(timeout=60) for result in results]
        assert "completed" in statuses
        assert len([d for d in simulator.downloads if d.prediction_id == job.prediction_id]) == 1
        with SyncStore(store) as blocking:
            assert [e.status for e in blocking.list_logs(job.id)] == [JobStatus.COMPLETED]
            stored = blocking.get_audio("sound_effect", "race")
        assert stored is not None
        assert stored.job_id == job.id
    finally:
        assert store.engine is not None
        store.metadata.drop_all(store.engine)
        store.close()


@pytest.mark.parametrize(
    ("faults", "downloads"),
    [
        (Faults(download_errors=2), 3),
        (Faults(truncate_downloads=1), 2),
        (Faults(slow_downloads=1, slow_download_seconds=2.0), 2),
    ],
    ids=["503-twice", "truncated", "slow"],
)
def test_download_faults_are_retried(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    faults: Faults,
    downloads: int,
) -> None:
    """5xx, truncated and slow downloads are retried until the audio is stored."""
    audio = start(simulator, receiver, store, downloader_options={"timeout": 0.5})
    simulator.queue_faults(faults)
    job = receiver.call(audio.generate, "sound_effect", "flaky", effect(1.0, 2.0))
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED
    assert len([d for d in simulator.downloads if d.prediction_id == job.prediction_id]) == (
        downloads
    )


def test_expired_output_is_dead_then_replayed(
    simulator: ReplicateSimulator,
    store: SQLiteStore,
    blocking: SyncStore,
    receiver: WebhookReceiver,
) -> None:
    """410 is permanent: the job is parked dead with its reason; replay runs it again."""
    audio = start(simulator, receiver, store)
    simulator.queue_faults(Faults(expired=True))
    job = receiver.call(audio.generate, "sound_effect", "gone", effect(1.0, 2.0))
    dead = receiver.wait_for(job.id)
    assert dead.status is JobStatus.DEAD
    assert dead.error == "output expired before it was downloaded"
    prediction_id = prediction_of(job)
    assert (
        len([d for d in simulator.downloads if d.prediction_id == prediction_id]) == 1
    )  # no retry
    assert [e.status for e in blocking.list_logs(job.id)] == [JobStatus.DEAD]
    simulator.set_faults(prediction_id, Faults())
    replayed = receiver.call(audio.replay, job.id)
    assert (replayed.id, replayed.status) == (job.id, JobStatus.COMPLETED)
    assert replayed.error is None


def test_missing_output_file_is_dead(
    simulator: ReplicateSimulator, store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """A 404 on the output is not retried: the job is dead, naming the status."""
    audio = start(simulator, receiver, store)
    job = settle(simulator, receiver)
    output = {"output": f"{simulator.url}/files/nope.mp3"}
    prediction = simulator.get_prediction(prediction_of(job)) | output
    done = receiver.call(_direct, audio, "race", prediction)
    assert (done.id, done.status) == (job.id, JobStatus.DEAD)
    assert "404" in (done.error or "")


async def _direct(audio: ReplicateAudio, content_id: str, prediction: dict[str, Any]) -> Job:
    """What a script does without a dispatcher: record the prediction (its job found by the
    prediction id) and process it in this task."""
    return await process_webhook_result(
        "sound_effect", content_id, prediction, store=audio.store, downloader=audio.downloader
    )


def test_oversized_output_is_refused(
    simulator: ReplicateSimulator, store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """An output above REPLICATE_AUDIO_MAX_AUDIO_BYTES is refused and the job parked dead."""
    audio = start(simulator, receiver, store, max_audio_bytes=2000)
    job = receiver.call(audio.generate, "sound_effect", "big", effect(1.0, 2.0))
    dead = receiver.wait_for(job.id)
    assert dead.status is JobStatus.DEAD
    assert "DownloadTooLargeError" in (dead.error or "")


@pytest.mark.parametrize(
    ("failure", "status"),
    [
        (Faults(fail_with="CUDA out of memory"), JobStatus.FAILED),
        (Faults(cancel=True), JobStatus.CANCELED),
    ],
)
def test_failed_and_canceled_predictions_are_logged_not_retried(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
    failure: Faults,
    status: JobStatus,
) -> None:
    """A failed or canceled prediction is logged once, nothing is downloaded or retried (a
    replay, here by prediction id, leaves it as it is)."""
    audio = start(simulator, receiver, store)
    simulator.queue_faults(failure)
    job = receiver.call(audio.generate, "sound_effect", "nope", effect(1.0, 2.0))
    assert receiver.wait_for(job.id).status is status
    simulator.wait_until(lambda: len(blocking.list_logs(job.id)) == 1)
    (entry,) = blocking.list_logs(job.id)
    assert entry.status is status
    if failure.fail_with:
        assert "CUDA out of memory" in entry.message
    assert not [d for d in simulator.downloads if d.prediction_id == job.prediction_id]
    replayed = receiver.call(audio.replay, prediction_of(job))
    assert (replayed.id, replayed.status) == (job.id, status)


class VoiceoverProcessor(AudioPostProcessor):
    """A user's own content type, storing into their own list."""

    content_type = "voiceover"

    def __init__(self) -> None:
        self.stored: list[tuple[str, AudioInfo, int]] = []
        self.logged: list[LogEntry] = []

    def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> None:
        self.stored.append((job.content_id, info, len(path.read_bytes())))

    def log_result(self, job: Job, entry: LogEntry, context: ProcessingContext) -> None:
        self.logged.append(entry)


def test_custom_processor_is_used(
    simulator: ReplicateSimulator,
    store: SQLiteStore,
    blocking: SyncStore,
    receiver: WebhookReceiver,
) -> None:
    """A processor for a new content type is routed to without touching the library."""
    voiceover = VoiceoverProcessor()
    audio = start(
        simulator, receiver, store, processors=default_processors() | {"voiceover": voiceover}
    )
    simulator.add_model("acme/voice", run_time=0.05, output_format="wav")
    config = ReplicateAudioConfig(model="acme/voice", input={"text": "hello", "duration": 1})
    job = receiver.call(audio.generate, "voiceover", "line-1", config)
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED
    ((content_id, info, size),) = voiceover.stored
    assert (content_id, info.format, size) == ("line-1", "wav", info.size)
    assert [e.status for e in voiceover.logged] == [JobStatus.COMPLETED]
    assert blocking.get_audio("voiceover", "line-1") is None  # it stored into its own place


def test_registered_processor_is_used_by_every_app(
    simulator: ReplicateSimulator,
    store: SQLiteStore,
    receiver: WebhookReceiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """register_processor routes a new content type for apps built without processors=; the
    same type again is refused unless replace=True."""
    from replicate_audio import processors

    monkeypatch.setattr(processors, "_registry", dict(processors._registry))  # undone after
    voiceover = VoiceoverProcessor()
    register_processor("voiceover", voiceover)
    with pytest.raises(ConfigurationError, match="voiceover"):
        register_processor("voiceover", VoiceoverProcessor())
    register_processor("voiceover", voiceover, replace=True)
    audio = start(simulator, receiver, store)  # the global registry
    assert "voiceover" in audio.content_types
    simulator.add_model("acme/voice", run_time=0.05, output_format="wav")
    config = ReplicateAudioConfig(model="acme/voice", input={"text": "hello", "duration": 1})
    job = receiver.call(audio.generate, "voiceover", "line-2", config)
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED
    assert [content_id for content_id, _, _ in voiceover.stored] == ["line-2"]


def test_temp_directory_empty_after_100_jobs_with_faults(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After 100 jobs with every kind of fault, no temporary file is left behind."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    audio = start(simulator, receiver, store, downloader_options={"timeout": 0.5})
    kinds = [
        Faults(),
        Faults(download_errors=1),
        Faults(truncate_downloads=1),
        Faults(expired=True),
        Faults(fail_with="boom"),
        Faults(duplicates=2, out_of_order=True),
        Faults(download_errors=9),
    ]
    jobs = []
    for n in range(100):
        simulator.queue_faults(kinds[n % len(kinds)])
        jobs.append(receiver.call(audio.generate, "sound_effect", f"fx{n}", effect(0.5, 1.0)))
    statuses = {receiver.wait_for(job.id, timeout=60).status for job in jobs}
    assert statuses == {JobStatus.COMPLETED, JobStatus.DEAD, JobStatus.FAILED}
    assert list(scratch.iterdir()) == []


def test_large_wav_is_processed_without_holding_it_in_memory(
    simulator: ReplicateSimulator, store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """A 21 MB WAV is downloaded, trimmed and stored with a Python heap peak far below its size."""
    audio = start(simulator, receiver, store)
    simulator.add_model("acme/long", run_time=0.05, output_format="wav")
    config = ReplicateAudioConfig(model="acme/long", input={"duration": 120}, duration=1.0)
    simulator.queue_faults(Faults(drop_ratio=1.0))
    job = receiver.call(audio.generate, "sound_effect", "long", config)
    prediction = simulator.wait_for_prediction(prediction_of(job))
    with httpx.stream("GET", prediction["output"]) as warm:  # synthesise it before measuring
        size = sum(len(chunk) for chunk in warm.iter_bytes())
    assert size > 20_000_000
    tracemalloc.start()
    try:
        done = receiver.call(_direct, audio, "long", prediction)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (done.id, done.status) == (job.id, JobStatus.COMPLETED)
    assert peak < size / 4, f"peak {peak} bytes for a {size} byte file"


class RecordingResolver:
    """Maps names to chosen addresses and records every lookup; never touches DNS."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.lookups: list[str] = []

    async def resolve(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.answers.get(host, ["151.101.0.1"])


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "https://10.0.0.5/out.mp3",
        "https://evil.example.com/out.mp3",
        "http://replicate.delivery/out.mp3",
        "https://internal.replicate.delivery/out.mp3",
        "https://metadata.replicate.delivery/out.mp3",
    ],
)
def test_production_settings_refuse_before_connecting(url: str) -> None:
    """In production settings a job whose output points off the allow-list, or to a private or
    link-local address, is parked dead before any connection is attempted."""
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ConnectError("this test may not connect anywhere", request=request)

    resolver = RecordingResolver(
        {
            "internal.replicate.delivery": ["10.1.2.3"],
            "metadata.replicate.delivery": ["169.254.169.254"],
        }
    )
    settings = Settings(base_url="https://app.example.com", api_token="r8_secret")
    store = MemoryStore()
    prediction = {"id": "p1", "status": "succeeded", "output": url}

    async def main() -> Job:
        # A job whose create has not answered yet: the delivery finds it by its URL's job id.
        await store.create_job(Job(id="j1", content_type="sound_effect", content_id="1"))
        transport = httpx.MockTransport(refuse)
        async with Downloader(settings, transport=transport, resolver=resolver) as downloader:
            return await process_webhook_result(
                "sound_effect", "1", prediction, store=store, downloader=downloader, job_id="j1"
            )

    job = anyio.run(main)
    assert (job.id, job.prediction_id, job.status) == ("j1", "p1", JobStatus.DEAD)
    assert "URLNotAllowedError" in (job.error or "")
    assert attempts == []


def test_lost_webhooks_are_reconciled(
    simulator: ReplicateSimulator, store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """When every webhook is lost, the sweep asks Replicate and stores the audio anyway."""
    config = simulator.settings(base_url=receiver.url)
    downloader = Downloader(config, backoff=0.01, max_backoff=0.05)
    audio = ReplicateAudio(
        config, store, downloader=downloader, sweep_interval=0.1, reconcile_after=0.05
    )
    receiver.serve(audio)
    simulator.queue_faults(Faults(drop_ratio=1.0))
    job = receiver.call(audio.generate, "sound_effect", "lost", effect(1.0, 2.0))
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED
    prediction_id = prediction_of(job)
    assert not [
        d for d in simulator.deliveries if d.prediction_id == prediction_id and not d.dropped
    ]


def deliver_result(simulator: ReplicateSimulator, receiver: WebhookReceiver, job: Job) -> None:
    """Send *job*'s finished prediction to its webhook URL, signed as Replicate would, and
    wait until the job has been processed."""
    body = json.dumps(simulator.wait_for_prediction(prediction_of(job))).encode()
    answer = post(webhook_url(receiver, job), body, sign_webhook(body, simulator.secret))
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "job": job.id,
        "prediction": job.prediction_id,
        "status": "received",
        "duplicate": False,
    }
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED


@pytest.mark.parametrize("first", ["newer", "older"], ids=["newer-first", "older-first"])
def test_the_newest_job_wins(
    simulator: ReplicateSimulator,
    store: SQLiteStore,
    blocking: SyncStore,
    receiver: WebhookReceiver,
    tmp_path: Path,
    first: str,
) -> None:
    """Two jobs for one piece of content whose results arrive in either order (the older's
    success after the newer completed, or before): the newer job's audio is what stays stored,
    and the older job is still completed and logged, saying its audio was not kept."""
    audio = start(simulator, receiver, store)
    jobs = []
    for duration in (1.0, 0.5):  # the older job, then the newer; the lengths tell them apart
        simulator.queue_faults(Faults(drop_ratio=1.0))  # the test delivers their results
        jobs.append(receiver.call(audio.generate, "sound_effect", "same", effect(duration, 2.0)))
    older, newer = jobs
    assert newer.is_newer_than(older)
    for job in [newer, older] if first == "newer" else [older, newer]:
        deliver_result(simulator, receiver, job)
    stored, info = stored_duration(audio, receiver, "sound_effect:same", tmp_path)
    assert stored.job_id == newer.id
    assert abs(info.duration - 0.5) <= MP3_FRAME
    ((older_entry,), (newer_entry,)) = (blocking.list_logs(job.id) for job in (older, newer))
    assert (older_entry.status, newer_entry.status) == (JobStatus.COMPLETED, JobStatus.COMPLETED)
    assert (SUPERSEDED in older_entry.message) is (first == "newer")
    assert SUPERSEDED not in newer_entry.message


def voiceover_app(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: Store,
    voice: VoiceoverProcessor,
    **options: Any,
) -> ReplicateAudio:
    """An app whose voiceovers go through *voice*, served by *receiver*; *options* go to
    ReplicateAudio (no sweep unless asked)."""
    config = simulator.settings(base_url=receiver.url)
    audio = ReplicateAudio(
        config,
        store,
        processors=default_processors() | {"voiceover": voice},
        downloader=Downloader(config, backoff=0.01, max_backoff=0.05),
        **({"sweep_interval": 0} | options),
    )
    receiver.serve(audio)
    simulator.add_model("acme/voice", run_time=0.05, output_format="wav")
    return audio


def ask_voiceover(audio: ReplicateAudio, receiver: WebhookReceiver, content_id: str = "v") -> Job:
    config = ReplicateAudioConfig(model="acme/voice", input={})
    job: Job = receiver.call(audio.generate, "voiceover", content_id, config)
    return job


class WatchedStore(SQLiteStore):
    """A SQLite store that lets a processor's worker thread wait for what the event loop does
    meanwhile: the claim renewals, and the sweeps that look for abandoned jobs."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self._news = threading.Condition()
        #: Claim renewals asked for, and those that found the claim taken over.
        self.renewals = 0
        self.lost_renewals = 0
        #: Each sweep for abandoned jobs: its cutoff, and the ids of the jobs it found.
        self.sweeps: list[tuple[datetime, list[str]]] = []

    def wait(self, predicate: Callable[[], bool], *, timeout: float = 10.0) -> None:
        """Block this (worker) thread until *predicate* holds."""
        with self._news:
            if not self._news.wait_for(predicate, timeout):
                raise TimeoutError(f"still waiting after {timeout} s")

    async def transition(self, job_id: str, **changes: Any) -> Job | None:
        renewal = changes["new"] is JobStatus.PROCESSING
        if renewal:
            with self._news:
                self.renewals += 1
                self._news.notify_all()
        moved = await self._move(job_id, **changes)
        if renewal and moved is None:
            with self._news:
                self.lost_renewals += 1
                self._news.notify_all()
        return moved

    async def _move(self, job_id: str, **changes: Any) -> Job | None:
        return await super().transition(job_id, **changes)

    async def list_jobs(self, **query: Any) -> list[Job]:
        jobs = await super().list_jobs(**query)
        if JobStatus.PROCESSING in (query.get("statuses") or ()):
            with self._news:
                self.sweeps.append((query["updated_before"], [job.id for job in jobs]))
                self._news.notify_all()
        return jobs


@pytest.fixture
def watched(tmp_path: Path) -> Iterator[WatchedStore]:
    sqlite = WatchedStore(tmp_path / "jobs.sqlite3")
    yield sqlite
    sqlite.close()


class Outlasting(VoiceoverProcessor):
    """Stores only once *until* holds for the job: a job that takes as long as that event
    takes to happen, waited for on the hook's worker thread while the loop renews the claim."""

    def __init__(self, store: WatchedStore, until: Callable[[Job], bool]) -> None:
        super().__init__()
        self.store, self.until = store, until

    def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> None:
        self.store.wait(lambda: self.until(job))
        super().store_audio(job, path, info, context)


def test_slow_job_keeps_its_claim(
    simulator: ReplicateSimulator, watched: WatchedStore, receiver: WebhookReceiver
) -> None:
    """A job still working when its lease would have run out renews its claim: the sweeps
    after that moment find no abandoned job, no second worker takes it, it is stored once."""

    def two_sweeps_past_the_lease(job: Job) -> bool:
        # Without renewals each of these sweeps would find the job (claimed at updated_at).
        return len([cutoff for cutoff, _ in watched.sweeps if cutoff > job.updated_at]) >= 2

    slow = Outlasting(watched, two_sweeps_past_the_lease)
    audio = voiceover_app(simulator, receiver, watched, slow, lease=0.3, sweep_interval=0.05)
    done = receiver.wait_for(ask_voiceover(audio, receiver, "slow").id)
    assert done.status is JobStatus.COMPLETED
    assert len(slow.stored) == 1
    assert done.attempts == 1
    assert watched.renewals >= 2
    assert [found for _, found in watched.sweeps if done.id in found] == []


class TakenOver(VoiceoverProcessor):
    """Another worker takes the first job over while this one is in one of its steps, as if
    this worker had stalled past its lease (the takeover is the store's own claim)."""

    def __init__(self, store: WatchedStore, step: str, *, stall: bool = False) -> None:
        super().__init__()
        self.store, self.step, self.stall = store, step, stall
        self.taken_over: list[str] = []

    def _take_over(self, job: Job, step: str) -> None:
        if step == self.step and not self.taken_over:
            claim = functools.partial(self.store.claim_job, job.id, stale_after=0)
            assert anyio.from_thread.run(claim) is not None
            self.taken_over.append(job.id)
            if self.stall:  # until this worker's next renewal has found its claim gone
                self.store.wait(lambda: self.store.lost_renewals >= 1)

    def trim_audio(self, source: Path, dest: Path, job: Job) -> AudioInfo:
        self._take_over(job, "trim")
        return super().trim_audio(source, dest, job)

    def store_audio(
        self, job: Job, path: Path, info: AudioInfo, context: ProcessingContext
    ) -> None:
        super().store_audio(job, path, info, context)
        self._take_over(job, "store")


def test_a_worker_taken_over_stops_before_storing(
    simulator: ReplicateSimulator, watched: WatchedStore, receiver: WebhookReceiver
) -> None:
    """A worker stalls in its trim past its lease and the job is taken over: its next renewal
    fails, so it stops without storing, logging or moving the job; the sweep hands the
    abandoned claim on, and the audio is stored once."""
    voice = TakenOver(watched, "trim", stall=True)
    audio = voiceover_app(simulator, receiver, watched, voice, lease=0.3, sweep_interval=0.05)
    done = receiver.wait_for(ask_voiceover(audio, receiver).id)
    assert voice.taken_over == [done.id]
    assert watched.lost_renewals == 1
    assert done.status is JobStatus.COMPLETED
    assert done.attempts == 3  # the stalled worker's, the takeover's, the one that finished
    assert len(voice.stored) == 1
    assert [entry.status for entry in voice.logged] == [JobStatus.COMPLETED]


def test_a_worker_taken_over_cannot_complete_the_job(
    simulator: ReplicateSimulator, watched: WatchedStore, receiver: WebhookReceiver
) -> None:
    """A worker whose job is taken over after it stored, but before it completes, loses the
    fenced completion: the job stays with the worker that holds the newer claim."""
    voice, held = TakenOver(watched, "store"), HeldDispatcher()
    audio = voiceover_app(simulator, receiver, watched, voice, dispatcher=held)
    job = ask_voiceover(audio, receiver)
    simulator.wait_until(lambda: job.id in held.held)
    after = receiver.call(audio.process, job.id)  # this worker, start to finish
    assert voice.taken_over == [job.id]
    assert (after.status, after.attempts) == (JobStatus.PROCESSING, 2)
    assert receiver.call(watched.get_job, job.id) == after
    assert len(voice.stored) == 1


class RenewalFails(WatchedStore):
    """A store whose claim renewals raise something other than StorageError."""

    async def _move(self, job_id: str, **changes: Any) -> Job | None:
        if changes["new"] is JobStatus.PROCESSING:
            raise RuntimeError("the renewal broke")
        return await super()._move(job_id, **changes)


class NoAttempt(WatchedStore):
    """A store written before transition() took attempt=."""

    async def transition(  # type: ignore[override]
        self,
        job_id: str,
        *,
        expected: Any,
        new: JobStatus,
        error: str | None = None,
        prediction: dict[str, Any] | None = None,
    ) -> Job | None:
        return await super().transition(
            job_id, expected=expected, new=new, error=error, prediction=prediction
        )


@pytest.mark.parametrize("kind", [RenewalFails, NoAttempt])
def test_stores_that_cannot_fence_still_complete(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    tmp_path: Path,
    kind: type[WatchedStore],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A slow job whose renewals raise (not a StorageError), or whose store predates attempt=,
    still completes, once, with a warning saying why."""
    store = kind(tmp_path / "jobs.sqlite3")
    try:
        slow = Outlasting(store, lambda job: store.renewals >= 1)  # slower than a renewal
        audio = voiceover_app(simulator, receiver, store, slow, lease=0.3)
        done = receiver.wait_for(ask_voiceover(audio, receiver).id)
        receiver.close()
    finally:
        store.close()
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 1)
    assert len(slow.stored) == 1
    expected = "the renewal broke" if kind is RenewalFails else "takes no attempt="
    assert expected in caplog.text


class PlainStore:
    """Every store method as a plain blocking one, the way a store over a synchronous driver
    is written (here over SQLite), recording each call and the thread it ran on."""

    METHODS = (
        "create_job", "get_job", "attach_prediction", "record_delivery", "transition",
        "claim_job", "list_jobs", "save_audio", "get_audio", "log_result", "list_logs",
    )  # fmt: skip

    def __init__(self, inner: SyncStore) -> None:
        self.inner = inner
        self.calls: list[tuple[str, threading.Thread]] = []

    def __getattr__(self, name: str) -> Any:
        if name not in self.METHODS:
            raise AttributeError(name)
        method = getattr(self.inner, name)

        def blocking(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, threading.current_thread()))
            return method(*args, **kwargs)

        return blocking


def test_a_blocking_store_works_end_to_end(
    simulator: ReplicateSimulator,
    store: SQLiteStore,
    blocking: SyncStore,
    receiver: WebhookReceiver,
) -> None:
    """A store whose methods are all plain blocking ones is wrapped once by the app: it takes
    deliveries twice over, processes and stores once, like an async one, and none of its
    calls runs on the event loop's thread; generate_sync works with it too."""
    plain = PlainStore(blocking)
    simulator.queue_faults(Faults(duplicates=2))
    audio = start(simulator, receiver, plain)  # type: ignore[arg-type]
    job = audio.generate_sync("sound_effect", "plain-1", effect(1.0, 2.0))
    assert job.status is not JobStatus.CREATING  # pending, or further (see above)
    assert receiver.wait_for(job.id).status is JobStatus.COMPLETED
    stored = blocking.get_audio("sound_effect", "plain-1")
    assert stored is not None
    assert stored.job_id == job.id
    assert [entry.status for entry in blocking.list_logs(job.id)] == [JobStatus.COMPLETED]
    called = {name for name, _ in plain.calls}
    assert {
        "create_job", "attach_prediction", "record_delivery", "get_job", "claim_job",
        "transition", "save_audio", "log_result",
    } <= called  # fmt: skip
    loop_thread = receiver.call(threading.current_thread)
    assert [name for name, thread in plain.calls if thread is loop_thread] == []
