"""Scenario 2: signed webhook deliveries accepted per second by ``ReplicateAudio.handle_webhook``,
on each store in process, and over real HTTP through the FastAPI and Flask adapters."""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import attrs
from measure import Section, Summary, duration, markdown_table, ratio
from prometheus_client import CollectorRegistry
from serving import in_child

from replicate_audio import Settings
from replicate_audio.app import ReplicateAudio
from replicate_audio.dispatch import JobRunner
from replicate_audio.jobs import Job
from replicate_audio.metrics import Metrics, PrometheusMetrics
from replicate_audio.storage import MemoryStore, SQLiteStore, Store
from replicate_audio.testing import generate_secret, sign_webhook

CLIENTS = 8
POSTGRES = os.environ.get("BENCHMARK_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
# Replicate's events for one prediction, the last one delivered twice with the same webhook-id.
EVENTS = ("starting", "processing", "succeeded")


@attrs.frozen
class Delivery:
    """One signed webhook delivery, ready to send."""

    path: str
    content_id: str
    headers: dict[str, str]
    body: bytes


@attrs.frozen
class Intake:
    """One measured round: wall time, per-delivery latencies, and how many were duplicates."""

    wall: float
    latencies: list[float]
    duplicates: int


class NullDispatcher:
    """Takes recorded jobs and drops them: intake is measured, processing is not."""

    @asynccontextmanager
    async def running(self, runner: JobRunner) -> AsyncIterator[None]:
        yield

    async def submit(self, job_id: str) -> None:
        pass


def make_jobs(count: int) -> list[Job]:
    """*count* pending sound-effect jobs with fresh prediction ids."""
    run = secrets.token_hex(4)
    return [
        Job(id=f"bench{run}{n}", content_type="sound_effect", content_id=str(n))
        for n in range(count)
    ]


def _sign_job(job: Job, secret: str) -> list[Delivery]:
    path = f"/api/replicate-webhook/{job.content_type}/{job.content_id}"
    signed = []
    for status in EVENTS:
        output = "https://replicate.delivery/x/out.mp3" if status == "succeeded" else None
        body = json.dumps({"id": job.id, "status": status, "output": output}).encode()
        signed.append(Delivery(path, job.content_id, sign_webhook(body, secret), body))
    return [*signed, signed[-1]]  # Replicate repeats a delivery: the same webhook-id again


def lanes(jobs: Sequence[Job], secret: str, clients: int) -> list[list[Delivery]]:
    """Every job's deliveries, in order, spread over *clients* lanes (one job per lane)."""
    spread: list[list[Delivery]] = [[] for _ in range(clients)]
    for n, job in enumerate(jobs):
        spread[n % clients].extend(_sign_job(job, secret))
    return spread


def settings(secret: str) -> Settings:
    """Settings with just what intake needs."""
    return Settings(webhook_secrets=(secret,))


async def _handle_all(audio: ReplicateAudio, spread: list[list[Delivery]]) -> Intake:
    latencies: list[float] = []
    duplicates = 0

    async def lane(deliveries: list[Delivery]) -> None:
        nonlocal duplicates
        for delivery in deliveries:
            start = time.perf_counter()
            outcome = await audio.handle_webhook(
                "sound_effect", delivery.content_id, delivery.headers, delivery.body
            )
            latencies.append(time.perf_counter() - start)
            if outcome.status_code != 200:
                raise RuntimeError(f"delivery refused: {outcome}")
            duplicates += outcome.body["duplicate"]

    async with audio:
        start = time.perf_counter()
        async with anyio.create_task_group() as group:
            for deliveries in spread:
                group.start_soon(lane, deliveries)
        wall = time.perf_counter() - start
    return Intake(wall, latencies, duplicates)


def in_process(
    store: Store, jobs: list[Job], clients: int, metrics: Metrics | None = None
) -> Intake:
    """Deliver to ``handle_webhook`` directly, from *clients* concurrent tasks."""
    secret = generate_secret()
    for job in jobs:
        store.create_job(job)
    audio = ReplicateAudio(
        settings(secret), store, dispatcher=NullDispatcher(), sweep_interval=0, metrics=metrics
    )
    return anyio.run(_handle_all, audio, lanes(jobs, secret, clients))


def _post_all(url: str, deliveries: list[Delivery]) -> tuple[list[float], int]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port)
    connection.connect()
    connection.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    latencies, duplicates = [], 0
    for delivery in deliveries:
        start = time.perf_counter()
        connection.request("POST", delivery.path, delivery.body, delivery.headers)
        response = connection.getresponse()
        answer = json.loads(response.read())
        latencies.append(time.perf_counter() - start)
        if response.status != 200:
            raise RuntimeError(f"delivery refused: {response.status} {answer}")
        duplicates += answer["duplicate"]
    connection.close()
    return latencies, duplicates


def over_http(url: str, jobs: list[Job], secret: str, clients: int) -> Intake:
    """POST the deliveries to a served app from *clients* threads, one keep-alive connection
    each."""
    spread = lanes(jobs, secret, clients)
    with ThreadPoolExecutor(max_workers=clients) as pool:
        start = time.perf_counter()
        results = list(pool.map(_post_all, [url] * clients, spread))
        wall = time.perf_counter() - start
    latencies = [seconds for lane_latencies, _ in results for seconds in lane_latencies]
    return Intake(wall, latencies, sum(duplicates for _, duplicates in results))


def intake_app(url: str, framework: str, database: str, secret: str) -> Any:
    """The adapter alone on a SQLite store, as a child process serves it."""
    audio = ReplicateAudio(
        settings(secret), SQLiteStore(database), dispatcher=NullDispatcher(), sweep_interval=0
    )
    if framework == "fastapi":
        from fastapi import FastAPI

        from replicate_audio.adapters.fastapi import create_router

        app = FastAPI()
        app.include_router(create_router(audio), prefix="/api")
        return app
    from flask import Flask

    from replicate_audio.adapters.flask import init_app

    flask_app = Flask("benchmark")
    init_app(flask_app, audio, url_prefix="/api")
    return flask_app


@contextmanager
def _postgres() -> Iterator[Store | None]:
    try:
        from replicate_audio.storage import SQLAlchemyStore

        store = SQLAlchemyStore(POSTGRES, table_prefix=f"bench_{secrets.token_hex(4)}_")
    except Exception:
        yield None
        return
    try:
        yield store
    finally:
        store.metadata.drop_all(store.engine)
        store.close()


def _rounds(measure: Callable[[list[Job]], Intake], jobs: int, rounds: int) -> list[Intake]:
    results = []
    for _ in range(rounds):
        batch = make_jobs(jobs)
        result = measure(batch)
        if result.duplicates != len(batch):
            raise RuntimeError(f"expected {len(batch)} duplicates, saw {result.duplicates}")
        results.append(result)
    return results


def run(*, quick: bool, folder: Path) -> Section:
    """Measure every target with the same deliveries, and rank them by throughput."""
    jobs, rounds = (40, 2) if quick else (150, 3)
    measured: dict[str, list[Intake]] = {}
    notes = []
    measured["`MemoryStore`, in process"] = _rounds(
        lambda batch: in_process(MemoryStore(), batch, CLIENTS), jobs, rounds
    )
    metrics = PrometheusMetrics(CollectorRegistry())
    measured["`MemoryStore`, in process, with `PrometheusMetrics`"] = _rounds(
        lambda batch: in_process(MemoryStore(), batch, CLIENTS, metrics), jobs, rounds
    )
    with SQLiteStore(folder / "intake.sqlite3") as sqlite:
        measured["`SQLiteStore`, in process"] = _rounds(
            lambda batch: in_process(sqlite, batch, CLIENTS), jobs, rounds
        )
    with _postgres() as postgres:
        if postgres is None:
            notes.append(f"PostgreSQL was not reachable at `{POSTGRES}`: skipped.")
        else:
            measured["`SQLAlchemyStore` on PostgreSQL, in process"] = _rounds(
                lambda batch: in_process(postgres, batch, CLIENTS), jobs, rounds
            )
    for framework, label in (
        ("fastapi", "FastAPI on uvicorn"),
        ("flask", "Flask on werkzeug (threaded)"),
    ):
        database, secret = str(folder / f"{framework}.sqlite3"), generate_secret()
        with (
            SQLiteStore(database) as store,
            in_child(framework, intake_app, framework, database, secret) as url,
        ):

            def measure(
                batch: list[Job], url: str = url, secret: str = secret, store: Store = store
            ) -> Intake:
                for job in batch:
                    store.create_job(job)
                return over_http(url, batch, secret, CLIENTS)

            measured[f"{label}, HTTP, `SQLiteStore`"] = _rounds(measure, jobs, rounds)
    return _section(measured, jobs, rounds, notes)


def _section(
    measured: dict[str, list[Intake]], jobs: int, rounds: int, notes: list[str]
) -> Section:
    rates = {
        name: Summary.of([len(r.latencies) / r.wall for r in results]).median
        for name, results in measured.items()
    }
    fastest = max(rates.values())
    rows = []
    for name, results in sorted(measured.items(), key=lambda item: -rates[item[0]]):
        latency = Summary.of([seconds for r in results for seconds in r.latencies])
        rows.append(
            [
                name,
                latency.count,
                f"{rates[name]:,.0f}",
                ratio(rates[name], fastest),
                duration(latency.median),
                duration(latency.p95),
            ]
        )
    headers = [
        "Target",
        "Deliveries",
        "Deliveries/s (median)",
        "vs fastest",
        "Latency p50",
        "Latency p95",
    ]
    per_round = jobs * (len(EVENTS) + 1)
    method = (
        f"{CLIENTS} concurrent clients send signed deliveries (`starting`, `processing`, "
        f"`succeeded`, then the `succeeded` again with the same `webhook-id`, which must come "
        f"back as a duplicate) for {jobs} pending jobs: {per_round} deliveries a round, "
        f"{rounds} rounds, fresh jobs each round. Signing happens before the clock starts; "
        f"verification, dedupe and the state machine are inside it. The dispatcher drops the "
        f"jobs it is given, so only intake is measured. HTTP servers run in a child process; "
        f"the load generator (`http.client`, keep-alive) shares the machine's cores with it."
    )
    return Section("Webhook intake throughput", method, markdown_table(headers, rows), tuple(notes))
