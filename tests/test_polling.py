"""Polling mode: predictions made with no webhook at all, followed by one poller per app
within its read budget, through the same intake and pipeline as webhooks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from replicate_audio import (
    ConfigurationError,
    JobStatus,
    ReplicateAudio,
    ReplicateAudioConfig,
    Settings,
)
from replicate_audio.download import Downloader
from replicate_audio.jobs import Job
from replicate_audio.storage import SQLiteStore
from replicate_audio.testing import Faults, ReplicateSimulator

EFFECT = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5",
    input={"prompt": "a cork pops", "duration": 2},
    duration=1.0,
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "jobs.sqlite3")
    yield sqlite
    sqlite.close()


def test_jobs_complete_with_no_webhook_within_the_read_budget(store: SQLiteStore) -> None:
    """Twenty jobs in polling mode: no create carries a webhook, nothing is delivered, every
    job completes once with its audio, and the poller's reads stay within its budget (one
    listing page covers all twenty jobs)."""
    budget = 240  # reads a minute: 4 a second
    with ReplicateSimulator(run_time=0.5) as sim:
        settings = sim.settings(
            base_url="http://127.0.0.1:9",  # nobody listens: webhooks could never come
            poll_interval=0.1,
            poll_reads_per_minute=budget,
        )
        downloader = Downloader(settings, backoff=0.01, max_backoff=0.05)
        audio = ReplicateAudio(settings, store, downloader=downloader, mode="polling")

        async def main() -> tuple[list[Job], float]:
            async with audio:
                started = time.monotonic()
                jobs = [await audio.generate("sound_effect", f"pop-{n}", EFFECT) for n in range(20)]
                with anyio.fail_after(30):
                    while True:
                        done = [await audio.get_job(job.id) for job in jobs]
                        if all(job.is_terminal for job in done):
                            return done, time.monotonic() - started
                        await anyio.sleep(0.05)

        done, took = anyio.run(main)
    assert {job.status for job in done} == {JobStatus.COMPLETED}, [job.error for job in done]
    assert all("webhook" not in create.body for create in sim.creates)
    assert sim.deliveries == []
    assert len(sim.downloads) == 20
    poller = audio.background.poller
    assert poller is not None
    # Within the budget, give or take the pass that was running when the minute began.
    assert 1 <= poller.reads <= budget / 60 * took + 2
    for job in done:
        stored = anyio.run(store.get_audio, "sound_effect", job.content_id)
        assert stored is not None
        assert stored.job_id == job.id


def test_a_failed_prediction_is_followed_to_its_end(store: SQLiteStore) -> None:
    """A prediction that fails is seen by the poller and ends the job failed, with the
    error Replicate gave, logged once."""
    with ReplicateSimulator(run_time=0.2, faults=Faults(fail_with="out of memory")) as sim:
        settings = sim.settings(base_url="http://127.0.0.1:9", poll_interval=0.1)
        audio = ReplicateAudio(settings, store, mode="polling")

        async def main() -> Job:
            async with audio:
                job = await audio.generate("sound_effect", "oom", EFFECT)
                with anyio.fail_after(15):
                    while True:
                        if (job := await audio.get_job(job.id)).is_terminal:
                            return job
                        await anyio.sleep(0.05)

        job = anyio.run(main)
    assert job.status is JobStatus.FAILED
    (entry,) = anyio.run(store.list_logs, job.id)  # written before the app stopped
    assert entry.status is JobStatus.FAILED
    assert "out of memory" in entry.message


def test_the_mode_is_a_setting() -> None:
    """REPLICATE_AUDIO_MODE picks the mode; an unknown one is refused by name, and polling
    needs no https BASE_URL (nothing calls it)."""
    assert Settings().mode == "webhooks"
    polling = Settings.from_env({"REPLICATE_AUDIO_MODE": "Polling", "BASE_URL": "http://10.0.0.5"})
    assert polling.mode == "polling"
    with pytest.raises(ConfigurationError, match="REPLICATE_AUDIO_MODE"):
        Settings.from_env({"REPLICATE_AUDIO_MODE": "carrier-pigeon"})
    with pytest.raises(ConfigurationError, match="BASE_URL"):
        Settings.from_env({"BASE_URL": "http://10.0.0.5"})  # webhooks need https there
