"""Jobs and their state machine: every allowed move, what deliveries may move, job ids, order."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from itertools import product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from replicate_audio import Job, JobStatus, ReplicateAudioConfig
from replicate_audio.jobs import (
    PREDICTION_STATUSES,
    TERMINAL_PREDICTION_STATUSES,
    can_apply_event,
    can_transition,
    new_job_id,
    status_for_prediction,
)
from replicate_audio.webhooks import is_prediction_id

S = JobStatus
#: The state machine as documented: each status, and the statuses it may move to.
ALLOWED: dict[JobStatus, set[JobStatus]] = {
    # creating -> creating: the sweep takes over a create whose process died.
    S.CREATING: {S.CREATING, S.PENDING, S.RUNNING, S.RECEIVED, S.FAILED, S.CANCELED, S.ABORTED},
    S.PENDING: {S.RUNNING, S.RECEIVED, S.FAILED, S.CANCELED, S.ABORTED},
    S.RUNNING: {S.RECEIVED, S.FAILED, S.CANCELED, S.ABORTED},
    S.RECEIVED: {S.PROCESSING},
    # processing -> processing: a renewed or taken-over claim; -> received: handed back.
    S.PROCESSING: {S.PROCESSING, S.RECEIVED, S.COMPLETED, S.DEAD},
    S.COMPLETED: set(),
    S.FAILED: set(),
    S.CANCELED: set(),
    S.ABORTED: set(),
    S.DEAD: {S.RECEIVED},  # replay
}
WAITING = {S.CREATING, S.PENDING, S.RUNNING}
TERMINAL = {S.COMPLETED, S.FAILED, S.CANCELED, S.ABORTED, S.DEAD}
#: Replicate's documented prediction statuses, and the job status a delivery of each asks for.
BY_PREDICTION = {
    "starting": S.RUNNING,
    "processing": S.RUNNING,
    "succeeded": S.RECEIVED,
    "failed": S.FAILED,
    "canceled": S.CANCELED,
    "aborted": S.ABORTED,
}
ALL_PAIRS = list(product(JobStatus, JobStatus))


def test_the_table_covers_every_status() -> None:
    """The table above names every status there is, so the pair tests below are complete."""
    assert set(ALLOWED) == set(JobStatus)
    assert [status.value for status in JobStatus] == [
        "creating", "pending", "running", "received", "processing",
        "completed", "failed", "canceled", "aborted", "dead",
    ]  # fmt: skip


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS, ids=lambda s: s.value)
def test_can_transition_matches_the_table(current: JobStatus, new: JobStatus) -> None:
    """can_transition allows exactly the documented moves, for every pair of statuses."""
    assert can_transition(current, new) is (new in ALLOWED[current])


@pytest.mark.parametrize(("current", "new"), ALL_PAIRS, ids=lambda s: s.value)
def test_deliveries_move_only_jobs_waiting_on_replicate(current: JobStatus, new: JobStatus) -> None:
    """A delivery moves a job only while it is creating, pending or running, and only as the
    table allows: a late success never pulls a job back from its worker or revives it."""
    assert can_apply_event(current, new) is (current in WAITING and new in ALLOWED[current])


@pytest.mark.parametrize("current", list(JobStatus), ids=lambda s: s.value)
def test_a_status_nobody_knows_moves_nothing(current: JobStatus) -> None:
    """can_apply_event(current, None), for a prediction status this version does not know,
    is false from every status."""
    assert can_apply_event(current, None) is False


def test_terminal_statuses() -> None:
    """Completed, failed, canceled, aborted and dead are terminal; only dead leaves (replay)."""
    assert {status for status in JobStatus if status.is_terminal} == TERMINAL
    assert {status for status in TERMINAL if ALLOWED[status]} == {S.DEAD}
    assert str(S.ABORTED) == "aborted"


@given(st.lists(st.sampled_from(list(JobStatus)), max_size=30))
def test_deliveries_alone_never_leave_a_terminal_status(asked: list[JobStatus]) -> None:
    """Whatever sequence of deliveries arrives, once a job is terminal, deliveries never move it
    again, and only the waiting statuses are ever left by one."""
    status = S.CREATING
    for new in asked:
        if can_apply_event(status, new):
            assert status in WAITING
            status = new
        if status.is_terminal:
            assert not any(can_apply_event(status, other) for other in JobStatus)


@pytest.mark.parametrize(("prediction_status", "job_status"), sorted(BY_PREDICTION.items()))
def test_status_for_every_documented_prediction_status(
    prediction_status: str, job_status: JobStatus
) -> None:
    """Each status Replicate documents maps to the job status its delivery asks for."""
    assert status_for_prediction(prediction_status) is job_status


def test_the_documented_statuses_are_the_mapped_ones() -> None:
    """PREDICTION_STATUSES is exactly the mapped statuses; the terminal ones are the final four."""
    assert set(BY_PREDICTION) == PREDICTION_STATUSES
    assert {"succeeded", "failed", "canceled", "aborted"} == TERMINAL_PREDICTION_STATUSES


@given(st.text(max_size=40).filter(lambda text: text not in BY_PREDICTION))
def test_an_unknown_status_string_maps_to_none(status: str) -> None:
    """Any other string (a status Replicate adds later, or a near miss) maps to None."""
    assert status_for_prediction(status) is None


@pytest.mark.parametrize(
    "status", ["Succeeded", " succeeded", "succeeded\n", "exploded", "", "CANCELED"]
)
def test_near_misses_map_to_none(status: str) -> None:
    """Case and whitespace matter: near misses of documented statuses map to None."""
    assert status_for_prediction(status) is None


@pytest.mark.parametrize(
    "status", [None, 1, 0.5, True, b"succeeded", ["succeeded"], {"status": "succeeded"}]
)
def test_a_status_that_is_not_a_string_maps_to_none(status: object) -> None:
    """A status that is not a string (bytes and containers of the right text included) maps
    to None rather than raising."""
    assert status_for_prediction(status) is None


def test_new_job_ids_are_22_url_safe_characters() -> None:
    """A job id is 22 characters of the URL-safe base64 alphabet: it goes into the webhook
    URL's query unescaped, and is a valid id wherever a prediction id is."""
    for _ in range(1000):
        job_id = new_job_id()
        assert re.fullmatch(r"[A-Za-z0-9_-]{22}", job_id), job_id
        assert is_prediction_id(job_id)


def test_new_job_ids_are_distinct() -> None:
    """Ten thousand ids in a row are all different (128 random bits each)."""
    assert len({new_job_id() for _ in range(10_000)}) == 10_000


def test_a_job_starts_creating_with_no_prediction() -> None:
    """A new Job is creating, has no prediction id yet, no attempts, and is not terminal."""
    job = Job(id="j1", content_type="sound_effect", content_id="7")
    assert (job.status, job.prediction_id, job.attempts, job.error) == (S.CREATING, None, 0, None)
    assert not job.is_terminal


T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def job_at(job_id: str, seconds: float) -> Job:
    return Job(
        id=job_id,
        content_type="sound_effect",
        content_id="7",
        created_at=T0 + timedelta(seconds=seconds),
    )


def test_the_job_asked_for_later_is_newer() -> None:
    """Of two jobs for one piece of content, the one created later is newer, whatever its id."""
    older, newer = job_at("z", 0), job_at("a", 0.000001)
    assert newer.is_newer_than(older)
    assert not older.is_newer_than(newer)


def test_jobs_created_at_the_same_moment_are_ordered_by_id() -> None:
    """Two jobs created at the same instant are ordered by id, so exactly one is newer."""
    first, second = job_at("a", 0), job_at("b", 0)
    assert second.is_newer_than(first)
    assert not first.is_newer_than(second)
    assert not first.is_newer_than(first)


@given(
    st.lists(
        st.tuples(st.sampled_from("abc"), st.integers(min_value=0, max_value=3)),
        min_size=2,
        max_size=8,
        unique=True,
    )
)
def test_is_newer_than_is_a_strict_total_order(moments: list[tuple[str, int]]) -> None:
    """Among distinct jobs exactly one of each pair is newer, and newer is transitive: the
    newest job of a piece of content is always well defined."""
    jobs = [job_at(job_id, seconds) for job_id, seconds in moments]
    for a, b in product(jobs, jobs):
        if a is b:
            assert not a.is_newer_than(b)
        else:
            assert a.is_newer_than(b) != b.is_newer_than(a)
    for a, b, c in product(jobs, jobs, jobs):
        if a.is_newer_than(b) and b.is_newer_than(c):
            assert a.is_newer_than(c)


def test_to_dict_is_what_the_jobs_endpoint_answers() -> None:
    """to_dict gives every field in JSON types: ids, status value, config dict, ISO times."""
    config = ReplicateAudioConfig(model="a/b", input={"prompt": "rain"}, duration=2.5)
    job = Job(
        id="j1",
        content_type="sound_effect",
        content_id="7",
        status=S.DEAD,
        prediction_id="p1",
        attempts=2,
        error="DownloadError: gone",
        config=config,
        prediction={"id": "p1", "status": "succeeded"},
        created_at=T0,
        updated_at=T0 + timedelta(seconds=90),
    )
    assert job.to_dict() == {
        "id": "j1",
        "prediction_id": "p1",
        "content_type": "sound_effect",
        "content_id": "7",
        "status": "dead",
        "attempts": 2,
        "error": "DownloadError: gone",
        "config": config.to_dict(),
        "created_at": "2026-01-01T00:00:00+00:00",
        "updated_at": "2026-01-01T00:01:30+00:00",
    }
    assert json.loads(json.dumps(job.to_dict())) == job.to_dict()


def test_to_dict_of_a_job_still_creating() -> None:
    """A job with no prediction and no config shows both as null (and never its prediction)."""
    data = Job(id="j1", content_type="sound_effect", content_id="7", created_at=T0).to_dict()
    assert (data["prediction_id"], data["config"], data["status"]) == (None, None, "creating")
    assert "prediction" not in data
