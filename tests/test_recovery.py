"""Recovery: matching a listed prediction to its job, re-queueing unfinished jobs, reconciling
lost webhooks, and settling jobs whose create never answered, against the simulator."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

from dispatchers import HeldDispatcher
from replicate_audio import Job, JobStatus, ReplicateAudioConfig, Settings
from replicate_audio.app import ReplicateAudio
from replicate_audio.download import Downloader
from replicate_audio.jobs import new_job_id, utcnow
from replicate_audio.recovery import Reconciled, matches_job
from replicate_audio.storage import MemoryStore, SQLiteStore, SyncStore
from replicate_audio.testing import Faults, ReplicateSimulator
from webhook_receiver import WebhookReceiver

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
WINDOW = timedelta(seconds=120)
MODEL = "stability-ai/stable-audio-2.5"
VERSION = "671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"
EFFECT = ReplicateAudioConfig(model=MODEL, input={"prompt": "a door", "duration": 2}, duration=1)


def stamp(moment: datetime) -> str:
    """A time as Replicate writes it."""
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def job_of(config: ReplicateAudioConfig | None = EFFECT, job_id: str = "j1") -> Job:
    return Job(id=job_id, content_type="sound_effect", content_id="7", config=config, created_at=T0)


def listed(seconds: float = 5, **fields: Any) -> dict[str, Any]:
    """A prediction as the listing shows it (no webhook field), created *seconds* after T0."""
    return {
        "id": "p1",
        "model": MODEL,
        "version": "hidden",
        "input": {"prompt": "a door", "duration": 2},
        "status": "succeeded",
        "created_at": stamp(T0 + timedelta(seconds=seconds)),
    } | fields


# -- matches_job ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "webhook",
    [
        "https://app.example.com/api/replicate-webhook/sound_effect/7?job=j1",
        "https://app.example.com/api/replicate-webhook/sound_effect/7?job=j1&trace=1",
    ],
)
def test_a_prediction_whose_webhook_names_the_job_matches(webhook: str) -> None:
    """Where the listing shows the webhook URL, its ?job= decides: the job it names matches,
    whatever its model, input or time."""
    prediction = listed(seconds=-3600, model="other/model", input={}, webhook=webhook)
    assert matches_job(prediction, job_of(), window=WINDOW)


@pytest.mark.parametrize(
    "webhook",
    [
        "https://app.example.com/api/replicate-webhook/sound_effect/7?job=j10",
        "https://app.example.com/api/replicate-webhook/sound_effect/7?job=xj1",
        "https://app.example.com/api/replicate-webhook/sound_effect/7",
    ],
    ids=["longer-id", "other-id", "no-job"],
)
def test_a_prediction_whose_webhook_names_another_job_does_not_match(webhook: str) -> None:
    """A webhook URL naming another job (or none) is not this job's, even when model, input
    and time would match."""
    assert not matches_job(listed(webhook=webhook), job_of(), window=WINDOW)


def test_a_prediction_of_the_same_model_and_input_in_the_window_matches() -> None:
    """Without a webhook URL, the same model and input, created in the window, is a match."""
    assert matches_job(listed(seconds=5), job_of(), window=WINDOW)
    assert matches_job(listed(seconds=120), job_of(), window=WINDOW)  # the window's end


def test_a_prediction_by_version_matches_on_the_version_id() -> None:
    """A job created by ``owner/name:version`` matches a prediction of that version id."""
    config = ReplicateAudioConfig(version=f"meta/musicgen:{VERSION}", input={"prompt": "x"})
    prediction = listed(model="meta/musicgen", version=VERSION, input={"prompt": "x"})
    assert matches_job(prediction, job_of(config), window=WINDOW)
    bare = ReplicateAudioConfig(version=VERSION, input={"prompt": "x"})
    assert matches_job(prediction, job_of(bare), window=WINDOW)
    assert not matches_job(prediction | {"version": "f" * 64}, job_of(config), window=WINDOW)


@pytest.mark.parametrize(
    ("prediction", "reason"),
    [
        (listed(seconds=121), "created after the window"),
        (listed(seconds=-31), "created well before the job (beyond the clock skew)"),
        (listed(model="other/model"), "another model"),
        (listed(input={"prompt": "a window", "duration": 2}), "another input"),
        (listed(created_at=None), "no creation time"),
        (listed(created_at="yesterday"), "an unreadable creation time"),
    ],
    ids=["after-window", "before-job", "model", "input", "no-time", "bad-time"],
)
def test_other_predictions_do_not_match(prediction: dict[str, Any], reason: str) -> None:
    """A prediction outside the window, of another model or input, or with no readable
    creation time is not the job's."""
    assert not matches_job(prediction, job_of(), window=WINDOW), reason


def test_a_prediction_shortly_before_the_job_matches() -> None:
    """Clocks differ: a prediction stamped a little before the job was recorded still matches."""
    assert matches_job(listed(seconds=-10), job_of(), window=WINDOW)


def test_a_job_without_config_matches_only_by_webhook() -> None:
    """A job with no config cannot be matched by model and input, only by its webhook URL."""
    job = job_of(config=None)
    assert not matches_job(listed(), job, window=WINDOW)
    assert matches_job(listed(webhook="https://a/x?job=j1"), job, window=WINDOW)


def test_a_listing_without_input_matches_by_model_and_time() -> None:
    """A listed prediction that shows no input is matched on model and time alone."""
    prediction = listed()
    del prediction["input"]
    assert matches_job(prediction, job_of(), window=WINDOW)


# -- through the simulator ----------------------------------------------------------------


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


def serve(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    *,
    settings: dict[str, Any] | None = None,
    **options: Any,
) -> ReplicateAudio:
    """An app on *store* served by *receiver*; no sweep (each test runs its steps by hand)."""
    config = simulator.settings(base_url=receiver.url, **(settings or {}))
    audio = ReplicateAudio(
        config,
        store,
        downloader=Downloader(config, backoff=0.01, max_backoff=0.05),
        **({"sweep_interval": 0} | options),
    )
    receiver.serve(audio)
    return audio


def prediction_of(job: Job) -> str:
    assert job.prediction_id is not None, job
    return job.prediction_id


def test_jobs_left_received_are_processed_when_the_app_starts_again(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
) -> None:
    """A process that recorded a success and died before processing it leaves the job
    received; the next start queues it at once, and it is stored and logged once."""
    held = HeldDispatcher()
    first = serve(simulator, receiver, store, dispatcher=held)
    job = receiver.call(first.generate, "sound_effect", "left", EFFECT)
    simulator.wait_until(lambda: job.id in held.held)
    simulator.wait_idle()
    receiver.close()  # the process "dies" with the job received
    left = blocking.get_job(job.id)
    assert left is not None
    assert left.status is JobStatus.RECEIVED

    restarted = WebhookReceiver()  # the next process, on the same store
    try:
        settings = simulator.settings(base_url=restarted.url)
        done = restarted.serve(ReplicateAudio(settings, store, sweep_interval=0)).wait_for(job.id)
    finally:
        restarted.close()
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 1)
    assert [entry.status for entry in blocking.list_logs(job.id)] == [JobStatus.COMPLETED]
    assert len([d for d in simulator.downloads if d.prediction_id == job.prediction_id]) == 1


def test_requeue_hands_on_stale_received_and_abandoned_processing_jobs() -> None:
    """requeue() queues received jobs waiting longer than a sweep interval, and processing
    jobs whose lease ran out (their worker died); at start every received job is due."""
    now = utcnow()

    def aged(job_id: str, status: JobStatus, seconds: float) -> Job:
        ago = now - timedelta(seconds=seconds)
        return Job(
            id=job_id,
            content_type="sound_effect",
            content_id=job_id,
            status=status,
            created_at=ago,
            updated_at=ago,
        )

    jobs = [
        aged("received-old", JobStatus.RECEIVED, 3600),
        aged("received-new", JobStatus.RECEIVED, 1),
        aged("processing-abandoned", JobStatus.PROCESSING, 3600),
        aged("processing-live", JobStatus.PROCESSING, 1),
        aged("pending-old", JobStatus.PENDING, 3600),
        aged("dead-old", JobStatus.DEAD, 3600),
        aged("completed-old", JobStatus.COMPLETED, 3600),
    ]
    store, held = MemoryStore(), HeldDispatcher()
    audio = ReplicateAudio(Settings(), store, dispatcher=held, sweep_interval=30, lease=60)

    async def main() -> tuple[list[str], int, list[str]]:
        for job in jobs:
            await store.create_job(job)
        async with audio:  # start-up: every received job, and the abandoned ones
            at_start = list(held.held)
            held.held.clear()
            swept = await audio.background.requeue()
        return at_start, swept, held.held

    at_start, swept, held_after = anyio.run(main)
    assert sorted(at_start) == ["processing-abandoned", "received-new", "received-old"]
    assert (swept, sorted(held_after)) == (2, ["processing-abandoned", "received-old"])


def test_lost_webhooks_are_reconciled_once(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
) -> None:
    """A job whose webhooks were all lost is moved by reconcile() from the prediction
    Replicate shows, then processed as its webhook would have been; a second pass finds
    nothing to do."""
    audio = serve(simulator, receiver, store, reconcile_after=0)
    simulator.queue_faults(Faults(drop_ratio=1.0))
    job = receiver.call(audio.generate, "sound_effect", "lost", EFFECT)
    simulator.wait_for_prediction(prediction_of(job))
    simulator.wait_idle()
    waiting = blocking.get_job(job.id)
    assert waiting is not None
    assert waiting.status is JobStatus.PENDING  # nothing was heard
    dry = receiver.call(functools.partial(audio.reconcile, dry_run=True))
    assert [(e.job.id, e.prediction_status, e.moved, e.detail) for e in dry] == [
        (job.id, "succeeded", False, "would record its end")
    ]
    assert blocking.get_job(job.id) == waiting  # a dry run records nothing
    assert moved(receiver.call(audio.reconcile)) == 1
    done = receiver.wait_for(job.id)
    assert (done.status, done.attempts) == (JobStatus.COMPLETED, 1)
    assert moved(receiver.call(audio.background.reconcile)) == 0
    assert [entry.status for entry in blocking.list_logs(job.id)] == [JobStatus.COMPLETED]
    assert not [d for d in simulator.deliveries if d.prediction_id == job.prediction_id and d.ok]


def test_reconcile_leaves_running_predictions_and_survives_unknown_ones(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """reconcile() moves only jobs whose prediction has finished: one still running is left
    as it is, and one Replicate does not know is logged and skipped, not a stop."""
    audio = serve(simulator, receiver, store, reconcile_after=0)
    simulator.add_model("acme/slow", run_time=60)
    slow = ReplicateAudioConfig(model="acme/slow", input={"duration": 1})
    simulator.queue_faults(Faults(drop_ratio=1.0))
    running = receiver.call(audio.generate, "sound_effect", "slow", slow)
    simulator.queue_faults(Faults(drop_ratio=1.0))
    finished = receiver.call(audio.generate, "sound_effect", "done", EFFECT)
    unknown = Job(
        id=new_job_id(),
        content_type="sound_effect",
        content_id="ghost",
        status=JobStatus.PENDING,
        prediction_id="nosuchpredictionanywhere00",
        created_at=utcnow() - timedelta(seconds=60),
        updated_at=utcnow() - timedelta(seconds=60),
    )
    blocking.create_job(unknown)
    simulator.wait_for_prediction(prediction_of(finished))
    report = {e.job.id: e for e in receiver.call(audio.background.reconcile)}
    assert moved(report.values()) == 1
    assert report[running.id].prediction_status in ("starting", "processing")
    assert report[running.id].detail == "still running on Replicate"
    assert report[unknown.id].prediction_status is None
    assert report[unknown.id].detail.startswith("not fetched: ")
    assert receiver.wait_for(finished.id).status is JobStatus.COMPLETED
    for left in (running, unknown):
        current = blocking.get_job(left.id)
        assert current is not None
        assert current.status is JobStatus.PENDING
    assert f"could not reconcile job {unknown.id}" in caplog.text


def moved(entries: Iterable[Reconciled]) -> int:
    """How many jobs a reconciliation moved."""
    return sum(entry.moved for entry in entries)


def unsent(config: ReplicateAudioConfig, *, content_id: str, age: float) -> Job:
    """A job recorded as creating *age* seconds ago whose create was never sent (its process
    died between recording it and sending it)."""
    then = utcnow() - timedelta(seconds=age)
    job = Job(id=new_job_id(), content_type="sound_effect", content_id=content_id, config=config)
    return attrs.evolve(job, created_at=then, updated_at=then)


def test_a_recent_creating_job_is_left_alone(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
) -> None:
    """A job creating for less than create_timeout may still get its answer: the sweep does
    not touch it, and sends nothing."""
    audio = serve(simulator, receiver, store, settings={"create_timeout": 60})
    job = blocking.create_job(unsent(EFFECT, content_id="young", age=1))
    assert receiver.call(audio.background.resolve_unsent) == 0
    assert blocking.get_job(job.id) == job
    assert simulator.creates == []


def test_an_unsent_create_is_sent_once_by_the_sweep(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
) -> None:
    """With REPLICATE_AUDIO_UNSENT_CREATES=create, a job whose create never reached Replicate
    is created by the sweep, once however often it runs, and completes."""
    audio = serve(
        simulator, receiver, store, settings={"create_timeout": 60, "unsent_creates": "create"}
    )
    job = blocking.create_job(unsent(EFFECT, content_id="unsent", age=90))
    assert receiver.call(audio.background.resolve_unsent) == 1
    done = receiver.wait_for(job.id)
    assert done.status is JobStatus.COMPLETED, done.error
    assert receiver.call(audio.background.resolve_unsent) == 0
    (create,) = simulator.creates
    assert (create.status_code, create.prediction_id) == (201, done.prediction_id)
    assert create.body["webhook"] == (
        f"{receiver.url}/api/replicate-webhook/sound_effect/unsent?job={job.id}"
    )
    assert create.body["input"] == dict(EFFECT.input)
    assert [entry.status for entry in blocking.list_logs(job.id)] == [JobStatus.COMPLETED]


def test_an_unsent_create_is_failed_when_so_configured(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
) -> None:
    """With REPLICATE_AUDIO_UNSENT_CREATES=fail, such a job ends failed, its reason naming the
    setting, and is logged once; nothing is sent to Replicate."""
    audio = serve(
        simulator, receiver, store, settings={"create_timeout": 60, "unsent_creates": "fail"}
    )
    job = blocking.create_job(unsent(EFFECT, content_id="unsent", age=90))
    assert receiver.call(audio.background.resolve_unsent) == 1
    failed = receiver.wait_for(job.id)
    assert (failed.status, failed.prediction_id) == (JobStatus.FAILED, None)
    assert "REPLICATE_AUDIO_UNSENT_CREATES" in (failed.error or "")
    simulator.wait_until(lambda: len(blocking.list_logs(job.id)) == 1)
    (entry,) = blocking.list_logs(job.id)
    assert entry.status is JobStatus.FAILED
    assert "REPLICATE_AUDIO_UNSENT_CREATES" in entry.message
    assert receiver.call(audio.background.resolve_unsent) == 0
    assert simulator.creates == []


@pytest.mark.parametrize("policy", ["create", "fail"])
def test_a_create_whose_answer_was_lost_is_found_not_sent_again(
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    store: SQLiteStore,
    blocking: SyncStore,
    policy: str,
) -> None:
    """A job whose create reached Replicate but whose answer (and webhooks) never came is
    found in Replicate's listing by model, input and time, given its prediction and
    completed; whatever unsent_creates says, nothing is created a second time."""
    settings = {"create_timeout": 60, "unsent_creates": policy}
    audio = serve(simulator, receiver, store, settings=settings)
    job = blocking.create_job(unsent(EFFECT, content_id="answered", age=90))
    simulator.queue_faults(Faults(drop_ratio=1.0))  # only the listing can tell
    sent = simulator.client().predictions.create(
        model=MODEL, input=dict(EFFECT.input), webhook=webhook_of(receiver, job)
    )
    simulator.wait_for_prediction(sent.id)
    assert receiver.call(audio.background.resolve_unsent) == 1
    done = receiver.wait_for(job.id)
    assert (done.status, done.prediction_id) == (JobStatus.COMPLETED, sent.id)
    assert len(simulator.creates) == 1
    assert [entry.status for entry in blocking.list_logs(job.id)] == [JobStatus.COMPLETED]


def webhook_of(receiver: WebhookReceiver, job: Job) -> str:
    return f"{receiver.url}/api/replicate-webhook/{job.content_type}/{job.content_id}?job={job.id}"
