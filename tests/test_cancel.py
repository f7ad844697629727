"""Cancelling a job: the prediction is canceled on Replicate and the job ends ``canceled``
once, whether the cancel's answer or the webhook it causes is recorded first."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from replicate_audio import JobStatus, ReplicateAudio, ReplicateAudioConfig
from replicate_audio.download import Downloader
from replicate_audio.errors import JobNotFoundError
from replicate_audio.jobs import Job
from replicate_audio.storage import SQLiteStore
from replicate_audio.testing import Faults, ReplicateSimulator
from webhook_receiver import WebhookReceiver

MUSIC = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5", input={"prompt": "a long drone", "duration": 8}
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "jobs.sqlite3")
    yield sqlite
    sqlite.close()


def start(sim: ReplicateSimulator, store: SQLiteStore, receiver: WebhookReceiver) -> ReplicateAudio:
    settings = sim.settings(base_url=receiver.url)
    downloader = Downloader(settings, backoff=0.01, max_backoff=0.05)
    audio = ReplicateAudio(settings, store, downloader=downloader, sweep_interval=0)
    receiver.serve(audio)
    return audio


def canceled_once(
    sim: ReplicateSimulator, receiver: WebhookReceiver, store: SQLiteStore, job: Job
) -> None:
    """The job is canceled, and logged canceled exactly once (the log entry is written by
    the dispatcher just after the move: waited for, then counted once the simulator has
    nothing left to send)."""
    done = receiver.wait_for(job.id)
    assert done.status is JobStatus.CANCELED, done.error
    sim.wait_until(lambda: bool(receiver.call(store.list_logs, job.id)))
    sim.wait_idle()
    logs = receiver.call(store.list_logs, job.id)
    assert [entry.status for entry in logs] == [JobStatus.CANCELED]


def test_the_cancels_answer_first_then_its_webhook(
    store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """With the webhooks held back, cancel() records the answer and returns the job
    canceled; the canceled webhook that follows is answered 200 and changes nothing."""
    with ReplicateSimulator(run_time=30, faults=Faults(delay=0.3)) as sim:
        audio = start(sim, store, receiver)
        job = receiver.call(audio.generate, "background_music", "drone", MUSIC)
        canceled = receiver.call(audio.cancel, job.id)
        assert canceled.status is JobStatus.CANCELED
        assert sim.get_prediction(job.prediction_id)["status"] == "canceled"
        sim.wait_idle()
        completed = [d for d in sim.deliveries if d.event == "completed"]
        assert [(d.status, d.status_code) for d in completed] == [("canceled", 200)]
        canceled_once(sim, receiver, store, job)


def test_the_webhook_first_then_cancel_returns_the_job_as_it_is(
    store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """A job whose canceled webhook was recorded already (canceled on Replicate's site, say)
    is returned by cancel() as it is, by job id or by prediction id."""
    with ReplicateSimulator(run_time=30) as sim:
        audio = start(sim, store, receiver)
        job = receiver.call(audio.generate, "background_music", "drone", MUSIC)
        sim.client().predictions.cancel(job.prediction_id)
        canceled_once(sim, receiver, store, job)
        for reference in (job.id, job.prediction_id):
            again = receiver.call(audio.cancel, reference)
            assert (again.id, again.status) == (job.id, JobStatus.CANCELED)
        canceled_once(sim, receiver, store, job)


def test_many_cancels_racing_their_webhooks_end_canceled_once(
    store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """Ten jobs canceled at once from several threads, their webhooks racing the answers
    in whatever order they come: each ends canceled, logged once."""
    with ReplicateSimulator(run_time=30) as sim:
        audio = start(sim, store, receiver)
        jobs = [
            receiver.call(audio.generate, "background_music", f"drone-{n}", MUSIC)
            for n in range(10)
        ]
        with ThreadPoolExecutor(5) as pool:
            answers = list(pool.map(audio.cancel_sync, [job.id for job in jobs]))
        assert {answer.status for answer in answers} == {JobStatus.CANCELED}
        sim.wait_idle()
        for job in jobs:
            canceled_once(sim, receiver, store, job)


def test_cancel_of_an_unknown_job_is_refused(store: SQLiteStore, receiver: WebhookReceiver) -> None:
    """An id that is no job's raises JobNotFoundError, and nothing is sent to Replicate."""
    with ReplicateSimulator(run_time=30) as sim:
        audio = start(sim, store, receiver)
        with pytest.raises(JobNotFoundError):
            receiver.call(audio.cancel, "no-such-job")
        assert sim.creates == []
