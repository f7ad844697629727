"""Prometheus metrics, scraped over HTTP from a FastAPI app on uvicorn that serves the simulator's
deliveries: every count matches what the simulator saw, duplicates and all."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import anyio
import attrs
import httpx
import pytest

from example_requests import wait_terminal
from replicate_audio import ReplicateAudioConfig, Settings
from replicate_audio.app import ReplicateAudio
from replicate_audio.download import Downloader
from replicate_audio.errors import PredictionError
from replicate_audio.jobs import Job, JobStatus
from replicate_audio.metrics import PrometheusMetrics
from replicate_audio.storage import Delivery, MemoryStore, RecordedEvent, SQLiteStore, SyncStore
from replicate_audio.testing import Faults, ReplicateSimulator, generate_secret, sign_webhook
from replicate_audio.testing.servers import listen, serve_asgi, url_of
from webhook_receiver import WebhookReceiver

prometheus_client = pytest.importorskip("prometheus_client")
pytest.importorskip("fastapi")

MAX_BODY = 64 * 1024
EFFECT = ReplicateAudioConfig(
    model="stability-ai/stable-audio-2.5", input={"prompt": "a door", "duration": 2}, duration=1
)


def scrape(client: httpx.Client) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """GET /metrics and parse it: (sample name, labels) -> value."""
    from prometheus_client.parser import text_string_to_metric_families

    answer = client.get("/metrics/")
    assert answer.status_code == 200, answer.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(answer.text)
        for sample in family.samples
    }


@pytest.fixture
def served(simulator: ReplicateSimulator, tmp_path: Path) -> Iterator[tuple[ReplicateAudio, str]]:
    """The facade with metrics on a registry of its own, its router and /metrics on uvicorn."""
    from fastapi import FastAPI

    from replicate_audio.adapters.fastapi import create_router

    registry = prometheus_client.CollectorRegistry()
    sock = listen()
    settings = simulator.settings(base_url=url_of(sock), max_webhook_bytes=MAX_BODY)
    store = SQLiteStore(tmp_path / "jobs.sqlite3")
    audio = ReplicateAudio(
        settings,
        store,
        downloader=Downloader(settings, backoff=0.01, max_backoff=0.05),
        sweep_interval=0,
        metrics=PrometheusMetrics(registry),
    )
    app = FastAPI()
    app.include_router(create_router(audio, public=True), prefix="/api")
    app.mount("/metrics", prometheus_client.make_asgi_app(registry))
    try:
        with serve_asgi(app, sock) as url:
            yield audio, url
    finally:
        store.close()
        sock.close()


def test_counts_match_what_happened(
    simulator: ReplicateSimulator, served: tuple[ReplicateAudio, str]
) -> None:
    """Three predictions (one completes with every webhook thrice and reordered, one fails on
    Replicate, one's output expired) and one refused: each job is counted finished once, each
    answered delivery once under its status code, unknown content types under "unknown"."""
    audio, url = served
    jobs = []
    for content_id, faults in enumerate(
        [
            Faults(duplicates=3, out_of_order=True),
            Faults(fail_with="CUDA out of memory"),
            Faults(expired=True),
        ]
    ):
        simulator.queue_faults(faults)
        jobs.append(audio.generate_sync("sound_effect", content_id, EFFECT))
    with pytest.raises(PredictionError):
        audio.generate_sync("sound_effect", 9, attrs.evolve(EFFECT, model="nobody/nothing"))
    with httpx.Client(base_url=url) as client:
        rows = [wait_terminal(client, f"/api/replicate-audio/jobs/{job.id}") for job in jobs]
        statuses = [row["status"] for row in rows]
        simulator.wait_idle()
        body = json.dumps({"id": "p", "status": "succeeded"}).encode()
        signed = sign_webhook(body, simulator.secret)
        client.post("/api/replicate-webhook/voiceover/1", content=body, headers=signed)
        client.post("/api/replicate-webhook/sound_effect/1", content=body)  # unsigned
        too_large = b" " * (MAX_BODY + 1)
        client.post("/api/replicate-webhook/sound_effect/1", content=too_large, headers=signed)
        samples = scrape(client)
    assert statuses == ["completed", "failed", "dead"]
    assert [row["prediction_id"] for row in rows] == [job.prediction_id for job in jobs]

    def count(name: str, **labels: str) -> float:
        return samples.get((f"replicate_audio_{name}", frozenset(labels.items())), 0.0)

    effect = {"content_type": "sound_effect"}
    assert count("predictions_total", **effect, result="created") == 3
    assert count("predictions_total", **effect, result="error") == 1
    for status in ("completed", "failed", "dead"):
        assert count("jobs_finished_total", **effect, status=status) == 1
        assert count("job_seconds_count", **effect, status=status) == 1
    # The completed and the dead job were processed here; the failed one needed no worker.
    assert count("processing_seconds_count", **effect) == 2
    delivered = [d for d in simulator.deliveries if d.ok]
    assert len([d for d in delivered if d.prediction_id == jobs[0].prediction_id]) >= 3
    assert count("webhooks_total", **effect, code="200") == len(delivered)
    assert count("webhooks_total", content_type="unknown", code="404") == 1
    assert count("webhooks_total", **effect, code="401") == 1
    assert count("webhooks_total", **effect, code="413") == 1  # refused by the adapter


def test_one_set_of_collectors_per_registry() -> None:
    """PrometheusMetrics built twice on one registry (an app factory called twice) counts into
    the same series instead of failing on duplicate names; another registry counts apart."""
    registry, other = prometheus_client.CollectorRegistry(), prometheus_client.CollectorRegistry()
    for metrics in (
        PrometheusMetrics(registry),
        PrometheusMetrics(registry),
        PrometheusMetrics(other),
    ):
        metrics.webhook_answered("sound_effect", 200)
    labels = {"content_type": "sound_effect", "code": "200"}
    assert registry.get_sample_value("replicate_audio_webhooks_total", labels) == 2
    assert other.get_sample_value("replicate_audio_webhooks_total", labels) == 1


class BrokenMetrics:
    """A metrics backend that is down: every call raises."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def prediction_created(self, content_type: str, *, ok: bool) -> None:
        self._fail("prediction_created")

    def webhook_answered(self, content_type: str, status_code: int) -> None:
        self._fail("webhook_answered")

    def job_finished(self, job: Job, *, processing_seconds: float | None) -> None:
        self._fail("job_finished")

    def _fail(self, name: str) -> None:
        self.calls.append(name)
        raise RuntimeError("the metrics backend is down")


def test_a_failing_metrics_backend_changes_nothing(
    simulator: ReplicateSimulator,
    tmp_path: Path,
    receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Metrics that raise are logged and ignored: the prediction is created, no delivery is
    answered 5xx, the job is completed and logged."""
    broken = BrokenMetrics()
    settings = simulator.settings(base_url=receiver.url)
    with SQLiteStore(tmp_path / "jobs.sqlite3") as store:
        audio = ReplicateAudio(settings, store, sweep_interval=0, metrics=broken)
        receiver.serve(audio)
        job = receiver.call(audio.generate, "sound_effect", 1, EFFECT)
        done = receiver.wait_for(job.id)
        simulator.wait_idle()
        receiver.close()
        with SyncStore(store) as blocking:
            logs = [entry.status for entry in blocking.list_logs(job.id)]
    assert done.status is JobStatus.COMPLETED
    assert logs == [JobStatus.COMPLETED]
    # Every delivery answered 2xx: the job is recorded before its create is sent, so even a
    # 'start' that outruns the create's answer finds it by the URL's job id.
    assert [d.event for d in simulator.deliveries if d.ok] == ["start", "completed"]
    assert all(d.ok for d in simulator.deliveries)
    assert set(broken.calls) == {"prediction_created", "webhook_answered", "job_finished"}
    assert "the metrics backend is down" in caplog.text


class StoreDown(MemoryStore):
    async def record_delivery(self, delivery: Delivery) -> RecordedEvent:
        raise RuntimeError("a bug in a custom store")


def test_a_delivery_that_raises_is_counted_as_500() -> None:
    """A delivery whose handling raises is counted under 500, and the error still propagates."""
    registry = prometheus_client.CollectorRegistry()
    settings = Settings(webhook_secrets=(generate_secret(),))
    audio = ReplicateAudio(settings, StoreDown(), metrics=PrometheusMetrics(registry))
    body = json.dumps({"id": "p1", "status": "succeeded"}).encode()
    headers = sign_webhook(body, settings.webhook_secrets[0])
    with pytest.raises(RuntimeError, match="a bug in a custom store"):
        anyio.run(audio.handle_webhook, "sound_effect", "1", headers, body)
    labels = {"content_type": "sound_effect", "code": "500"}
    assert registry.get_sample_value("replicate_audio_webhooks_total", labels) == 1
