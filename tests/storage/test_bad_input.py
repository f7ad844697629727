"""Input that no store should ever see is refused by the facade first, on every store: ids
with control characters, spaces or non-ASCII, and JSON's non-standard NaN."""

from __future__ import annotations

import functools
import json

import anyio
import pytest

from replicate_audio import Job, JobNotFoundError, JobStatus, Settings
from replicate_audio.app import ReplicateAudio
from replicate_audio.storage import SyncStore
from replicate_audio.testing import generate_secret, sign_webhook

SECRET = generate_secret()
BAD_IDS = ["p\x00", "p\ud800", "p 1", "p\u00e9", "x" * 257, ""]


@pytest.mark.parametrize("by_job_id", [True, False], ids=["by-job-id", "by-prediction-id"])
@pytest.mark.parametrize(
    "body",
    [
        *(json.dumps({"id": bad, "status": "succeeded"}).encode() for bad in BAD_IDS),
        b'{"id": "p1", "status": "succeeded", "metrics": {"predict_time": NaN}}',
        b'{"id": "p1", "status": "succeeded", "metrics": {"predict_time": -Infinity}}',
    ],
)
def test_bad_deliveries_answer_400_on_every_store(
    store: SyncStore, body: bytes, by_job_id: bool
) -> None:
    """A signed delivery with an id no database takes, or NaN, is a 400 (not a 500 from the
    store), and the job it names is untouched."""
    store.create_job(
        Job(
            id="j1",
            prediction_id="p1",
            status=JobStatus.PENDING,
            content_type="sound_effect",
            content_id="1",
        )
    )
    audio = ReplicateAudio(Settings(webhook_secrets=(SECRET,)), store.store, sweep_interval=0)
    headers = sign_webhook(body, SECRET)
    handle = functools.partial(audio.handle_webhook, job_id="j1" if by_job_id else None)
    outcome = anyio.run(handle, "sound_effect", "1", headers, body)
    assert outcome.status_code == 400, outcome.body
    assert anyio.run(audio.get_job, "p1").prediction is None
    assert anyio.run(audio.get_job, "j1").status is JobStatus.PENDING


@pytest.mark.parametrize("job_id", BAD_IDS)
def test_bad_job_ids_are_not_found_on_every_store(store: SyncStore, job_id: str) -> None:
    """get_job and replay of an id no database takes raise JobNotFoundError (a 404)."""
    audio = ReplicateAudio(Settings(webhook_secrets=(SECRET,)), store.store, sweep_interval=0)
    for method in (audio.get_job, audio.replay):
        with pytest.raises(JobNotFoundError):
            anyio.run(method, job_id)
