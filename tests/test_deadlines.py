"""A job's deadline end to end: ``ReplicateAudioConfig(deadline=...)`` is sent as
``Cancel-After``; a prediction that never started ends the job ``aborted``, one that was
running ends it ``canceled``, each logged once, from the real webhook."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from replicate_audio import JobStatus, ReplicateAudio, ReplicateAudioConfig
from replicate_audio.storage import SQLiteStore
from replicate_audio.testing import ReplicateSimulator
from webhook_receiver import WebhookReceiver

QUEUED, SLOW = "acme/queued", "acme/slow"


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "jobs.sqlite3")
    yield sqlite
    sqlite.close()


@pytest.fixture
def sim() -> Iterator[ReplicateSimulator]:
    """Replicate's 5 s minimum lowered to 1 s, so a deadline test takes about a second."""
    with ReplicateSimulator(min_deadline=1, webhook_retry_delays=(0.05, 0.1, 0.2)) as simulator:
        simulator.add_model(QUEUED, start_delay=2, run_time=0.2)
        simulator.add_model(SLOW, run_time=2)
        yield simulator


def effect(model: str) -> ReplicateAudioConfig:
    return ReplicateAudioConfig(model=model, input={"prompt": "a pop", "duration": 1}, deadline=1)


@pytest.mark.parametrize(
    ("model", "status"), [(QUEUED, JobStatus.ABORTED), (SLOW, JobStatus.CANCELED)]
)
def test_a_deadline_ends_the_job_aborted_or_canceled_once(
    sim: ReplicateSimulator,
    store: SQLiteStore,
    receiver: WebhookReceiver,
    model: str,
    status: JobStatus,
) -> None:
    """Deadline 1 s: on a model queued for 2 s the job ends aborted; on one running 2 s it
    ends canceled. Either way the create carried ``Cancel-After: 1s`` and the job's log has
    that one terminal entry."""
    audio = ReplicateAudio(sim.settings(base_url=receiver.url), store, sweep_interval=0)
    receiver.serve(audio)
    job = receiver.call(audio.generate, "sound_effect", "pop", effect(model))
    done = receiver.wait_for(job.id)
    assert done.status is status, done.error
    assert sim.get_prediction(job.prediction_id)["status"] == status.value
    (create,) = sim.creates
    assert {k.lower(): v for k, v in create.headers.items()}["cancel-after"] == "1s"
    sim.wait_idle()
    logs = receiver.call(store.list_logs, job.id)
    assert [entry.status for entry in logs] == [status]
