"""Scenario 3: webhook intake over HTTP under wrk, each request a fresh signed delivery for a
pending job, beside a bare endpoint in the same run: FastAPI on uvicorn against bare Starlette,
Flask on gunicorn against a bare Flask view, each on SQLite and on PostgreSQL.

python benchmarks/intake_http.py                  # 5 s rounds, 3 rounds; prints the section
python benchmarks/intake_http.py --write          # and puts it in docs/benchmarks.md
python benchmarks/intake_http.py --seconds 1 --only fastapi --stores sqlite   # a smoke run
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import attrs
import report
import sqlalchemy as sa
from intake_apps import POSTGRES, PREFIX, READY, fresh_stores
from intake_results import Outcome, section
from loadgen import Run, SignedRequest, missing_tools, serve, write_requests, wrk
from measure import Section

from replicate_audio import Settings
from replicate_audio.jobs import Job, new_job_id
from replicate_audio.storage import Store
from replicate_audio.testing import generate_secret, sign_webhook

CONNECTIONS = 32
WRK_THREADS = 2
GUNICORN_THREADS = 8  # one gthread worker: the same settings for the bare view and the adapter
WARMUP_SECONDS = 1
MIN_BATCH = 2000
# Deliveries made per round: this many times what the fastest round so far could send.
HEADROOM = 2.0
STORES = ("sqlite", "postgres")
FRAMEWORKS = ("fastapi", "flask")


def pending_deliveries(store: Store, count: int, secret: str) -> list[SignedRequest]:
    """Make *count* pending jobs in *store*; return the signed ``succeeded`` delivery that
    Replicate would send for each (path with its query, headers, body).

    The one function that knows how jobs are made and what their webhook URLs look like:
    each job is recorded under a library-minted id, its prediction id attached as a create
    would, and its webhook URL carries ``?job=<job id>``.
    """
    settings = Settings(webhook_prefix=PREFIX)
    run = secrets.token_hex(4)
    jobs = [
        (
            Job(id=new_job_id(), content_type="sound_effect", content_id=f"{run}-{n}"),
            f"p{run}{n:06d}",
        )
        for n in range(count)
    ]

    async def record() -> None:
        limit = anyio.Semaphore(32)

        async def one(job: Job, prediction_id: str) -> None:
            async with limit:
                await store.create_job(job)
                await store.attach_prediction(job.id, {"id": prediction_id, "status": "starting"})

        async with anyio.create_task_group() as group:
            for job, prediction_id in jobs:
                group.start_soon(one, job, prediction_id)

    anyio.run(record)
    deliveries = []
    for job, prediction_id in jobs:
        url = urlsplit(settings.webhook_url(job.content_type, job.content_id, job.id))
        path = f"{url.path}?{url.query}" if url.query else url.path
        body = prediction_body(prediction_id)
        headers = {"Content-Type": "application/json", **sign_webhook(body, secret)}
        deliveries.append(SignedRequest(path, headers, body))
    return deliveries


def prediction_body(prediction_id: str) -> bytes:
    """A finished prediction as Replicate posts it (about 1 KiB, like the real ones)."""
    api = f"https://api.replicate.com/v1/predictions/{prediction_id}"
    prediction = {
        "id": prediction_id,
        "model": "meta/musicgen",
        "version": "671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb",
        "input": {"prompt": "thunder rolling over a quiet harbour at night", "duration": 8},
        "logs": "Loading model...\nGenerating 8.0 s of audio\n100%|##########| 400/400\n",
        "output": f"https://replicate.delivery/xezq/{prediction_id}/out.mp3",
        "data_removed": False,
        "error": None,
        "status": "succeeded",
        "created_at": "2026-11-24T17:11:02.118Z",
        "started_at": "2026-11-24T17:11:02.734Z",
        "completed_at": "2026-11-24T17:11:07.201Z",
        "urls": {
            "cancel": f"{api}/cancel",
            "get": api,
            "stream": f"https://stream.replicate.com/v1/files/{prediction_id}",
            "web": f"https://replicate.com/p/{prediction_id}",
        },
        "metrics": {"predict_time": 4.467, "total_time": 5.083},
        "webhook": "https://app.example.com/api/replicate-webhook/sound_effect/7",
        "webhook_events_filter": ["start", "completed"],
    }
    return json.dumps(prediction, separators=(",", ":")).encode()


@attrs.frozen
class Options:
    """How long and how much to measure."""

    seconds: int = 5
    rounds: int = 3
    frameworks: tuple[str, ...] = FRAMEWORKS
    stores: tuple[str, ...] = STORES


@attrs.frozen
class Target:
    """One server to measure: a bare endpoint (no store), or an adapter on a store."""

    name: str
    factory: str
    store: str | None = None


FRAMEWORK_SETUP = {
    "fastapi": ("uvicorn", Target("bare Starlette", "bare_starlette"), "fastapi_app"),
    "flask": ("gunicorn", Target("bare Flask", "bare_flask"), "flask_app"),
}
#: Endpoints without the library beside the bare one: what the framework itself costs.
FRAMEWORK_ONLY = {"fastapi": [Target("bare FastAPI router", "bare_fastapi")], "flask": []}


def _batch_size(rate: float, seconds: float) -> int:
    """Enough deliveries that a round at up to HEADROOM times *rate* sends none twice."""
    return max(MIN_BATCH, int(HEADROOM * rate * seconds) + CONNECTIONS)


def measure_framework(
    framework: str, options: Options, folder: Path, notes: list[str]
) -> list[Outcome]:
    """Serve the bare endpoint and the adapter on each store side by side, warm them up, then
    measure them in turn, round after round, rotating which goes first."""
    server, bare, factory = FRAMEWORK_SETUP[framework]
    secret = generate_secret()
    with fresh_stores(options.stores, folder, notes) as stores, ExitStack() as servers:
        if not stores:
            notes.append(f"{framework}: no store could be opened, so nothing was measured.")
            return []
        adapters = [Target(f"adapter + {kind}", factory, kind) for kind in stores]
        targets = [bare, *FRAMEWORK_ONLY[framework], *adapters]
        urls = {}
        for target in targets:
            environ = stores[target.store][0].environ(secret) if target.store else {}
            log = folder / f"{framework}-{target.factory}-{target.store or 'bare'}.log"
            urls[target] = servers.enter_context(
                serve(
                    server,
                    target.factory,
                    environ=environ,
                    log=log,
                    ready=READY,
                    threads=GUNICORN_THREADS,
                )
            )
        wrk_log = folder / f"{framework}-wrk.log"

        def deliveries(batches: dict[str, int], tag: str) -> dict[Target, Path]:
            files = {}
            for kind, size in batches.items():
                made = pending_deliveries(stores[kind][1], size, secret)
                files[kind] = write_requests(
                    made, folder / f"{framework}-{kind}-{tag}", WRK_THREADS
                )
            first = next(iter(files.values()))  # the bare endpoint reads the same bodies
            return {target: files.get(target.store, first) for target in targets}

        def hit(target: Target, files: dict[Target, Path], seconds: int) -> Run:
            return wrk(
                urls[target],
                files[target],
                seconds=seconds,
                connections=CONNECTIONS,
                threads=WRK_THREADS,
                log=wrk_log,
            )

        files = deliveries(dict.fromkeys(stores, MIN_BATCH), "warmup")
        fastest = {target: hit(target, files, WARMUP_SECONDS).rate for target in targets}
        runs: dict[Target, list[Run]] = {target: [] for target in targets}
        for round_ in range(options.rounds):
            batches = {
                t.store: _batch_size(fastest[t], options.seconds) for t in targets if t.store
            }
            files = deliveries(batches, f"round{round_}")
            for target in targets[round_ % len(targets) :] + targets[: round_ % len(targets)]:
                run = hit(target, files, options.seconds)
                runs[target].append(run)
                fastest[target] = max(fastest[target], run.rate)
    return [
        Outcome(framework, target.name, target.store, runs[target], runs[bare], target is bare)
        for target in targets
    ]


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def method(options: Options) -> str:
    """How the figures were made, for the report."""
    fast = all(importlib.util.find_spec(name) for name in ("uvloop", "httptools"))
    uvicorn = "uvicorn with uvloop and httptools" if fast else "uvicorn (asyncio, h11)"
    postgres = sa.engine.make_url(POSTGRES)
    return (
        f"Each server runs in a process of its own with one worker, on 127.0.0.1: {uvicorn} "
        f"for FastAPI, for a bare Starlette endpoint and for a bare FastAPI router (the same "
        f"route in an `APIRouter` included in a `FastAPI` app: what FastAPI costs before the "
        f"library does anything), gunicorn with one `gthread` worker of "
        f"{GUNICORN_THREADS} threads for Flask and for a bare Flask view. The bare endpoints "
        f"sit at the webhook route and only read the body. "
        f"`wrk -t{WRK_THREADS} -c{CONNECTIONS} -d{options.seconds}s --latency` (written in C; "
        f"`bash benchmarks/setup.sh` installs it) sends every request as a fresh signed "
        f"`succeeded` delivery (about 1 KiB) for a job made pending just before the round, "
        f"read from a file by `benchmarks/deliveries.lua`; the bare endpoint gets the same "
        f"bytes. The servers take turns: {_count(options.rounds, 'round')} of "
        f"{options.seconds} s after a {WARMUP_SECONDS} s warm-up each, rotating which goes "
        f"first; each round makes {HEADROOM:g} times as many deliveries as the fastest round "
        f"so far could send. The dispatcher drops the jobs it is given, so intake is measured, "
        f"not processing. PostgreSQL is `{postgres.render_as_string(hide_password=True)}`, "
        f"with a fresh table prefix, dropped afterwards. A cell is the median of the rounds "
        f"with their range in brackets; Latency max is the largest of any round. vs bare: "
        f"each round's requests/s over the bare endpoint's in the same round. Failed: any "
        f"status outside 2xx (a 404 or 503 included) and socket errors; wrk's timeout is "
        f"10 s. wrk shares the machine's cores with the server."
    )


def run(*, quick: bool, folder: Path, options: Options | None = None) -> Section:
    """Measure every framework on every store; what cannot run is noted, not measured."""
    options = options or Options(seconds=2 if quick else 5)
    load = os.getloadavg()[0]
    notes = [
        f"Load average (1 min) when the scenario started: {load:.2f} on {os.cpu_count()} CPUs."
    ]
    missing = missing_tools()
    outcomes: list[Outcome] = []
    if missing:
        notes += [f"Not measured: {reason}." for reason in missing]
        for reason in missing:
            print(reason, file=sys.stderr)
    else:
        for framework in options.frameworks:
            work = folder / framework
            work.mkdir(parents=True, exist_ok=True)
            outcomes += measure_framework(framework, options, work, notes)
    return section(
        outcomes,
        seconds=options.seconds,
        rounds=options.rounds,
        method=method(options),
        notes=notes,
    )


def main(argv: list[str] | None = None) -> int:
    """Run the scenario alone; print its section, or write it into docs/benchmarks.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="per round (default 5)")
    parser.add_argument("--rounds", type=int, default=3, help="per server (default 3)")
    parser.add_argument("--only", choices=FRAMEWORKS, action="append", help="repeatable")
    parser.add_argument("--stores", choices=STORES, action="append", help="repeatable")
    parser.add_argument("--write", action="store_true", help="replace the section in the docs")
    parser.add_argument("--output", type=Path, default=report.DOCS, help=f"{report.DOCS}")
    parser.add_argument("--keep", type=Path, help="keep the logs and files in this folder")
    args = parser.parse_args(argv)
    options = Options(
        seconds=args.seconds,
        rounds=args.rounds,
        frameworks=tuple(args.only or FRAMEWORKS),
        stores=tuple(args.stores or STORES),
    )
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="replicate-audio-bench-") as temporary:
        folder = args.keep or Path(temporary)
        result = run(quick=False, folder=folder, options=options)
    elapsed = time.perf_counter() - start
    if args.write:
        report.replace_section(
            args.output,
            result,
            script="benchmarks/intake_http.py",
            elapsed=elapsed,
            after="Webhook intake throughput",
        )
        print(f"wrote {args.output} in {elapsed:.0f} s", file=sys.stderr)
    else:
        print("\n".join(report.section_lines(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
