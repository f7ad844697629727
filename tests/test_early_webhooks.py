"""A completed delivery that arrives before the create has answered (a fast or cached model):
the job, recorded first, takes it by the job id in its URL, and completes, stored once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from replicate_audio import JobStatus, ReplicateAudio, ReplicateAudioConfig
from replicate_audio.download import Downloader
from replicate_audio.storage import SQLiteStore
from replicate_audio.testing import Faults, ReplicateSimulator
from webhook_receiver import WebhookReceiver

EFFECT = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5",
    input={"prompt": "a bell rings once", "duration": 2},
    duration=1.0,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "jobs.sqlite3")
    yield sqlite
    sqlite.close()


@pytest.mark.parametrize("duplicates", [0, 3])
def test_completed_before_the_create_answers(
    store: SQLiteStore, receiver: WebhookReceiver, duplicates: int
) -> None:
    """Faults(early_webhooks=True): succeeded is delivered (and answered 200) while the create
    is still waiting; the job completes once, with the create's prediction id."""
    faults = Faults(early_webhooks=True, duplicates=duplicates)
    with ReplicateSimulator(run_time=0.05, faults=faults) as sim:
        settings = sim.settings(base_url=receiver.url)
        downloader = Downloader(settings, backoff=0.01, max_backoff=0.05)
        audio = ReplicateAudio(settings, store, downloader=downloader, sweep_interval=0)
        receiver.serve(audio)
        job = receiver.call(audio.generate, "sound_effect", "bell", EFFECT)
        [create] = sim.creates
        assert job.prediction_id == create.prediction_id
        completed = [d for d in sim.deliveries if d.event == "completed"]
        assert completed
        # Sent and answered before the create's answer left the simulator (its own tests
        # pin that order): a job recorded only after the create would have answered 404.
        assert {d.status_code for d in completed} == {200}
        done = receiver.wait_for(job.id)
        assert done.status is JobStatus.COMPLETED, done.error
        stored = receiver.call(audio.get_audio, "sound_effect", "bell")
        assert stored is not None
        assert stored.job_id == job.id
        logs = receiver.call(store.list_logs, job.id)
        assert [entry.status for entry in logs] == [JobStatus.COMPLETED]
        assert len(sim.downloads) == 1  # processed once, however many copies came
