"""The library against what the real service does, through the simulator that models it:
deployments, official models by ``version="owner/name"``, multi-file outputs stored as
stems, sync mode's data: outputs, and an output that expired before it was downloaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from replicate_audio import (
    JobStatus,
    ReplicateAudio,
    ReplicateAudioConfig,
    StemsProcessor,
    process_webhook_result,
)
from replicate_audio.audio import probe
from replicate_audio.download import Downloader
from replicate_audio.pipeline import EXPIRED
from replicate_audio.processors import default_processors
from replicate_audio.storage import MemoryStore, SQLiteStore
from replicate_audio.testing import Faults, ReplicateSimulator
from webhook_receiver import WebhookReceiver


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    sqlite = SQLiteStore(tmp_path / "jobs.sqlite3")
    yield sqlite
    sqlite.close()


def facade(
    sim: ReplicateSimulator, store: SQLiteStore, receiver: WebhookReceiver
) -> ReplicateAudio:
    settings = sim.settings(base_url=receiver.url)
    downloader = Downloader(settings, backoff=0.01, max_backoff=0.05)
    processors = default_processors() | {"stems": StemsProcessor()}
    audio = ReplicateAudio(settings, store, processors, downloader=downloader, sweep_interval=0)
    receiver.serve(audio)
    return audio


def stored_seconds(receiver: WebhookReceiver, audio: ReplicateAudio, *key: str) -> float:
    stored = receiver.call(audio.get_audio, *key)
    assert stored is not None
    return stored.duration


@pytest.mark.parametrize(
    "config",
    [
        ReplicateAudioConfig(deployment="acme/sfx", input={"prompt": "a gong", "duration": 2}),
        ReplicateAudioConfig(version="meta/musicgen", input={"prompt": "a gong", "duration": 2}),
    ],
    ids=["deployment", "official-model-as-version"],
)
def test_a_deployment_and_an_official_model_by_name(
    store: SQLiteStore, receiver: WebhookReceiver, config: ReplicateAudioConfig
) -> None:
    """A deployment is created through POST /v1/deployments/{owner}/{name}/predictions, and
    version="owner/name" through the models endpoint; both jobs complete with their audio."""
    with ReplicateSimulator(run_time=0.2) as sim:
        sim.add_deployment("acme/sfx", model="meta/musicgen")
        audio = facade(sim, store, receiver)
        job = receiver.call(audio.generate, "background_music", "gong", config)
        done = receiver.wait_for(job.id)
        assert done.status is JobStatus.COMPLETED, done.error
        [create] = sim.creates
        expected = (
            "/v1/deployments/acme/sfx/predictions"
            if config.deployment
            else "/v1/models/meta/musicgen/predictions"
        )
        assert create.path == expected
        assert stored_seconds(receiver, audio, "background_music", "gong") == pytest.approx(2, 0.01)


def test_a_list_model_through_the_stems_processor(
    store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """A model whose output is a list of files: StemsProcessor stores each under its index,
    every file decoded and measured."""
    with ReplicateSimulator(run_time=0.2) as sim:
        sim.add_model("acme/loops", output_as_list=True, output_files=3)
        audio = facade(sim, store, receiver)
        config = ReplicateAudioConfig(model="acme/loops", input={"duration": 1})
        job = receiver.call(audio.generate, "stems", "loops", config)
        done = receiver.wait_for(job.id)
        assert done.status is JobStatus.COMPLETED, done.error
        for name in ("0", "1", "2"):
            assert stored_seconds(receiver, audio, "stems", "loops", name) == pytest.approx(
                1, abs=0.05
            )
        assert len(sim.downloads) == 3


def test_sync_mode_data_outputs_are_stored_without_a_download(tmp_path: Path) -> None:
    """What sync mode (Prefer: wait) answers, data: URIs, goes through the pipeline and is
    stored from the URI itself: nothing is fetched."""
    with ReplicateSimulator(run_time=0.1) as sim:
        prediction = sim.client().models.predictions.create(
            "stability-ai/stable-audio-2.5", input={"duration": 1}, wait=10
        )
        assert prediction.output.startswith("data:audio/mpeg;base64,")
        answered = {"id": prediction.id, "status": prediction.status, "output": prediction.output}
        fetched_before = len(sim.downloads)
        store = MemoryStore()
        config = ReplicateAudioConfig(model="stability-ai/stable-audio-2.5", input={})

        async def main() -> None:
            from replicate_audio.jobs import Job, new_job_id

            job = Job(
                id=new_job_id(), content_type="background_music", content_id="sync", config=config
            )
            await store.create_job(job)
            async with Downloader(sim.settings(base_url="http://127.0.0.1:9")) as downloader:
                done = await process_webhook_result(
                    "background_music", "sync", answered, store=store, downloader=downloader,
                    job_id=job.id,
                )  # fmt: skip
            assert done.status is JobStatus.COMPLETED, done.error

        anyio.run(main)
        assert len(sim.downloads) == fetched_before
    stored = anyio.run(store.get_audio, "background_music", "sync")
    assert stored is not None
    kept = tmp_path / "kept.mp3"
    kept.write_bytes(stored.data)
    assert probe(kept).duration == pytest.approx(1, abs=0.05)


def test_an_output_removed_before_the_webhook_came_is_dead(
    store: SQLiteStore, receiver: WebhookReceiver
) -> None:
    """Retention shorter than the webhook's delay: by the time the delivery comes the file
    host answers 410 for the output, and the job ends dead, "output expired before it was
    downloaded", without retrying a file that cannot come back."""
    with ReplicateSimulator(run_time=0.1, retention=0.2, faults=Faults(delay=0.8)) as sim:
        audio = facade(sim, store, receiver)
        config = ReplicateAudioConfig(
            model="stability-ai/stable-audio-2.5", input={"duration": 1}, duration=0.5
        )
        job = receiver.call(audio.generate, "sound_effect", "late", config)
        done = receiver.wait_for(job.id)
        assert (done.status, done.error) == (JobStatus.DEAD, EXPIRED)
        assert sim.get_prediction(job.prediction_id)["data_removed"] is True
        assert [d.status_code for d in sim.downloads] == [410]
