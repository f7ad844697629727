"""Processing on Dramatiq workers, over real Redis and RabbitMQ: the web process only queues,
workers process each job exactly once, retry on a store outage, and stop cleanly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from replicate_audio import JobStatus
from replicate_audio.app import ReplicateAudio
from replicate_audio.dispatch import DramatiqDispatcher, InProcessDispatcher
from replicate_audio.dispatch.dramatiq import DramatiqWorker
from replicate_audio.download import Downloader
from replicate_audio.errors import ConfigurationError, StorageError
from replicate_audio.examples.catalog import Catalog, catalog_processors, sound_effect_config
from replicate_audio.jobs import Job
from replicate_audio.storage import MemoryStore, SQLiteStore
from replicate_audio.testing import Faults, ReplicateSimulator
from replicate_audio.testing.servers import listen, serve_asgi, url_of
from services import require_service
from webhook_receiver import WebhookReceiver

URLS = {
    "redis": "redis://127.0.0.1:6379/0",
    "rabbitmq": "amqp://guest:guest@127.0.0.1:5672/%2F",
}
TERMINAL = ("completed", "failed", "canceled", "dead")


class Queue:
    """A queue of its own on one broker, deleted afterwards; makes dispatchers for it."""

    def __init__(self, kind: str) -> None:
        self.kind, self.url = kind, URLS[kind]
        self.name = f"replicate_audio_test_{uuid.uuid4().hex[:12]}"
        self._dispatchers: list[DramatiqDispatcher] = []

    def dispatcher(self, **options: Any) -> DramatiqDispatcher:
        """A dispatcher on a broker of its own, as a separate process would have."""
        made = DramatiqDispatcher(url=self.url, queue_name=self.name, options=options)
        self._dispatchers.append(made)
        return made

    def waiting(self) -> int:
        """How many messages wait on the queue, delivered to no consumer yet."""
        if self.kind == "redis":
            import redis

            client = redis.Redis.from_url(self.url)
            try:
                return int(client.llen(f"dramatiq:{self.name}"))
            finally:
                client.close()
        import pika

        connection = pika.BlockingConnection(pika.URLParameters(self.url))
        try:
            declared = connection.channel().queue_declare(self.name, passive=True)
            return int(declared.method.message_count)
        finally:
            connection.close()

    def delete(self) -> None:
        for made in self._dispatchers:
            made.close()
        if self.kind == "redis":
            import redis

            client = redis.Redis.from_url(self.url)
            for key in client.scan_iter(f"*{self.name}*"):
                client.delete(key)
            client.close()
        else:
            import pika

            connection = pika.BlockingConnection(pika.URLParameters(self.url))
            channel = connection.channel()
            for name in (self.name, f"{self.name}.DQ", f"{self.name}.XQ"):
                channel.queue_delete(name)
            connection.close()


@pytest.fixture(params=["redis", "rabbitmq"])
def queue(request: pytest.FixtureRequest) -> Iterator[Queue]:
    require_service(request.param)
    made = Queue(request.param)
    yield made
    made.delete()


class Site:
    """The example FastAPI app (the web process) and Dramatiq workers sharing its SQLite files."""

    def __init__(self, simulator: ReplicateSimulator, folder: Path, queue: Queue) -> None:
        self.simulator, self.folder, self.queue = simulator, folder, queue
        self.sock = listen()
        self.url = url_of(self.sock)
        self.settings = simulator.settings(base_url=self.url)
        self.catalog = Catalog(folder / "app.sqlite3")

    def audio(self, store: SQLiteStore, dispatcher: DramatiqDispatcher) -> ReplicateAudio:
        return ReplicateAudio(
            self.settings,
            store,
            processors=catalog_processors(self.catalog),
            dispatcher=dispatcher,
            downloader=Downloader(self.settings, backoff=0.01, max_backoff=0.05),
            sweep_interval=0,
        )

    @contextmanager
    def web(self) -> Iterator[httpx.Client]:
        from replicate_audio.examples.fastapi_app import create_app

        store = SQLiteStore(self.folder / "jobs.sqlite3")
        app = create_app(self.catalog, self.audio(store, self.queue.dispatcher()))
        try:
            with serve_asgi(app, self.sock.dup()), httpx.Client(base_url=self.url) as client:
                yield client
        finally:
            store.close()

    @contextmanager
    def worker(self, store: SQLiteStore | None = None, **options: Any) -> Iterator[None]:
        store = store or SQLiteStore(self.folder / "jobs.sqlite3")
        audio = self.audio(store, self.queue.dispatcher(**options))
        try:
            with DramatiqWorker(audio, threads=4, worker_timeout=0.05, shutdown_timeout=5):
                yield
        finally:
            store.close()

    def request_effects(self, client: httpx.Client, count: int) -> list[str]:
        paths = []
        for n in range(count):
            answer = client.post("/api/sound-effects", json={"prompt": f"boom {n}", "duration": 1})
            assert answer.status_code == 202, answer.text
            paths.append(f"/api/sound-effects/{answer.json()['id']}")
        return paths

    def wait_rows(
        self, client: httpx.Client, paths: list[str], statuses: tuple[str, ...] = TERMINAL
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + 20
        while True:
            rows = [client.get(path).json() for path in paths]
            if all(row["status"] in statuses for row in rows):
                return rows
            assert time.monotonic() < deadline, [row["status"] for row in rows]
            time.sleep(0.02)

    def prediction_ids(self, client: httpx.Client, rows: list[dict[str, Any]]) -> list[str]:
        """The prediction id of each row's job, as the jobs route shows it."""
        jobs = [client.get(f"/api/replicate-audio/jobs/{row['job_id']}").json() for row in rows]
        assert all(job["prediction_id"] for job in jobs), jobs
        return [job["prediction_id"] for job in jobs]


@pytest.fixture
def site(simulator: ReplicateSimulator, tmp_path: Path, queue: Queue) -> Iterator[Site]:
    made = Site(simulator, tmp_path, queue)
    yield made
    made.sock.close()


def test_six_effects_stored_exactly_once_by_a_worker(site: Site) -> None:
    """Six sound effects, every webhook thrice and reordered, processed on a Dramatiq worker:
    all complete and each output is downloaded exactly once."""
    site.simulator.faults = Faults(duplicates=3, out_of_order=True)
    with site.worker(), site.web() as client:
        rows = site.wait_rows(client, site.request_effects(client, 6))
        predictions = site.prediction_ids(client, rows)
    assert [row["status"] for row in rows] == ["completed"] * 6
    assert all(row["audio_data_b64"] for row in rows)
    assert len(set(predictions)) == 6
    downloaded = [record.prediction_id for record in site.simulator.downloads]
    assert sorted(downloaded) == sorted(predictions)


def test_web_process_never_processes(site: Site) -> None:
    """The web process only queues: once every webhook is answered, both jobs' messages
    wait on the broker, taken by no one, the jobs are still received and nothing was
    downloaded; the queued jobs complete once a worker starts."""
    with site.web() as client:
        paths = site.request_effects(client, 2)
        site.simulator.wait_idle()  # every delivery answered, so every job's message sent
        # Publishing is asynchronous on RabbitMQ: wait until the broker counts both.
        site.simulator.wait_until(lambda: site.queue.waiting() >= 2)
        assert site.queue.waiting() == 2
        rows = [client.get(path).json() for path in paths]
        assert [row["status"] for row in rows] == ["received"] * 2
        assert site.simulator.downloads == []
        with site.worker():
            rows = site.wait_rows(client, paths)
        assert site.queue.waiting() == 0
    assert [row["status"] for row in rows] == ["completed"] * 2
    assert len(site.simulator.downloads) == 2


class ClaimFailsOnce(SQLiteStore):
    """A store that is down for the first claim."""

    claims = 0

    async def claim_job(self, job_id: str, *, stale_after: float) -> Job | None:
        self.claims += 1
        if self.claims == 1:
            raise StorageError("the store is down for a moment")
        return await super().claim_job(job_id, stale_after=stale_after)


def test_storage_error_makes_dramatiq_retry(site: Site) -> None:
    """A StorageError while processing reaches Dramatiq, which retries the message: the
    job completes on the second claim, downloaded once."""
    store = ClaimFailsOnce(site.folder / "jobs.sqlite3")
    with site.worker(store, min_backoff=10, max_backoff=20), site.web() as client:
        rows = site.wait_rows(client, site.request_effects(client, 1))
    assert rows[0]["status"] == "completed"
    assert store.claims == 2
    assert len(site.simulator.downloads) == 1


# An app's own facade for `replicate-audio worker --app worker_app:audio`.
WORKER_APP = """
import os

from replicate_audio.app import ReplicateAudio
from replicate_audio.dispatch.dramatiq import DramatiqDispatcher

audio = ReplicateAudio(dispatcher=DramatiqDispatcher(queue_name=os.environ["TEST_QUEUE"]))
"""


@pytest.mark.parametrize("how", ["environment", "app"])
def test_worker_command_processes_and_stops_on_sigterm(
    queue: Queue,
    simulator: ReplicateSimulator,
    receiver: WebhookReceiver,
    tmp_path: Path,
    how: str,
) -> None:
    """`replicate-audio worker`, configured by the environment (or given the app's own facade
    with --app), completes a queued job and exits 0 on SIGTERM."""
    (tmp_path / "worker_app.py").write_text(WORKER_APP)
    database = tmp_path / "jobs.sqlite3"
    settings = simulator.settings(base_url=receiver.url)
    store = SQLiteStore(database)
    audio = ReplicateAudio(settings, store, dispatcher=queue.dispatcher(), sweep_interval=0)
    receiver.serve(audio)
    env = os.environ | simulator.environ(
        REPLICATE_AUDIO_DATABASE=str(database),
        REPLICATE_AUDIO_BROKER_URL=queue.url,
        TEST_QUEUE=queue.name,
    )
    command = [sys.executable, "-m", "replicate_audio.cli", "worker", "--threads", "2"]
    command += ["--queue", queue.name] if how == "environment" else ["--app", "worker_app:audio"]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        job = receiver.call(audio.generate, "sound_effect", 7, sound_effect_config("door", 1.0))
        assert receiver.wait_for(job.id, timeout=20).status is JobStatus.COMPLETED
        assert receiver.call(audio.get_audio, "sound_effect", "7") is not None
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err.decode()
    assert f"worker consuming queue {queue.name!r}".encode() in out
    assert b"worker stopped" in out
    store.close()


def test_broker_url_must_be_redis_or_rabbitmq(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing or unknown broker URL is a ConfigurationError naming the variable."""
    monkeypatch.delenv("REPLICATE_AUDIO_BROKER_URL", raising=False)
    with pytest.raises(ConfigurationError, match="REPLICATE_AUDIO_BROKER_URL: is not set"):
        DramatiqDispatcher()
    monkeypatch.setenv("REPLICATE_AUDIO_BROKER_URL", "kafka://user:secret@host")
    with pytest.raises(ConfigurationError, match="REPLICATE_AUDIO_BROKER_URL") as raised:
        DramatiqDispatcher()
    assert "secret" not in str(raised.value)


def test_worker_needs_a_dramatiq_dispatcher() -> None:
    """A DramatiqWorker refuses a facade whose dispatcher is not a DramatiqDispatcher."""
    audio = ReplicateAudio(store=MemoryStore(), dispatcher=InProcessDispatcher())
    with pytest.raises(ConfigurationError, match="dispatcher: must be a DramatiqDispatcher"):
        DramatiqWorker(audio)
