"""Many jobs against Replicate's create rate limit: every 429 retried after its Retry-After,
every job with exactly one prediction, none lost, none made twice."""

from __future__ import annotations

import itertools
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import anyio

from replicate_audio import JobStatus, ReplicateAudio, ReplicateAudioConfig, RetryPolicy
from replicate_audio.jobs import Job
from replicate_audio.storage import SQLiteStore
from replicate_audio.testing import ReplicateSimulator
from webhook_receiver import WebhookReceiver

EFFECT = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5", input={"prompt": "a pop", "duration": 1}
)
JOBS = 5
# Retry-After is 1 s at 60 creates a minute; a job may wait behind all the others.
PATIENT = RetryPolicy(attempts=JOBS + 3, base_delay=0.05, max_delay=2.0)


def test_jobs_over_the_create_limit_each_get_one_prediction(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    """Five jobs generated at once against 60 creates a minute and a 2 s bucket: the
    creates past the bucket answer 429 and are retried no sooner than Retry-After; each job
    ends completed with its own prediction, and the accepted creates are exactly the jobs."""
    with (
        ReplicateSimulator(run_time=0.1, create_rate_limit=60, rate_limit_burst=2) as sim,
        SQLiteStore(tmp_path / "jobs.sqlite3") as store,
    ):
        audio = ReplicateAudio(sim.settings(base_url=receiver.url), store, sweep_interval=0)
        receiver.serve(audio)

        async def generate_all() -> list[Job]:
            jobs: list[Job] = []

            async def one(n: int) -> None:
                jobs.append(await audio.generate("sound_effect", f"pop-{n}", EFFECT, retry=PATIENT))

            async with anyio.create_task_group() as group:
                for n in range(JOBS):
                    group.start_soon(one, n)
            return jobs

        jobs = receiver.call(generate_all)
        done = [receiver.wait_for(job.id) for job in jobs]

    assert {job.status for job in done} == {JobStatus.COMPLETED}
    accepted = [c for c in sim.creates if c.status_code in (200, 201)]
    assert sorted(c.prediction_id or "" for c in accepted) == sorted(
        job.prediction_id or "" for job in jobs
    )
    assert len({job.prediction_id for job in jobs}) == JOBS
    throttled = [c for c in sim.creates if c.status_code == 429]
    assert throttled, "the burst should have gone past the bucket"
    assert len(sim.creates) == len(accepted) + len(throttled)
    by_job: dict[str, list[float]] = {}
    for create in sim.creates:
        webhook = create.body["webhook"]
        job_id = parse_qs(urlsplit(webhook).query)["job"][0]
        by_job.setdefault(job_id, []).append(create.time)
    assert set(by_job) == {job.id for job in jobs}
    for times in by_job.values():
        # Each retry came after the Retry-After of 1 s (less a little clock slack).
        assert all(later - earlier >= 0.95 for earlier, later in itertools.pairwise(times))
