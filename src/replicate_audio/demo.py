"""``replicate-audio demo``: the whole flow on this machine, shown live in the terminal.

A local Replicate simulator, the FastAPI example app on uvicorn and SQLite in a temporary
folder; 3 sound effects and 1 background music track requested at once, then a table of
what each took. With ``REPLICATE_API_TOKEN`` it runs against the real Replicate instead:
by webhook with a public https ``BASE_URL``, otherwise in polling mode (and says so).
"""

from __future__ import annotations

import base64
import ipaddress
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import httpx

from .config import Settings, is_local_host
from .testing.servers import listen, serve_asgi, url_of

__all__ = ["run_demo"]

SOUND_EFFECTS = (
    ("a heavy wooden door creaks open", 2.0),
    ("rain on a tin roof", 3.0),
    ("a distant thunder roll", 4.0),
)
MUSIC = ("calm ambient piano for reading", 8.0)


@attrs.define
class DemoJob:
    """One requested piece of audio and what the demo saw of it."""

    kind: str
    label: str
    status_url: str
    trigger_seconds: float
    started: float
    status: str = "pending"
    stored_seconds: float | None = None
    duration: float | None = None
    size: int | None = None
    file: Path | None = None
    error: str | None = None


def _real_replicate(environ: dict[str, str]) -> bool:
    """With a token, the demo asks Replicate (or the API ``REPLICATE_API_BASE_URL`` names)."""
    return bool(environ.get("REPLICATE_API_TOKEN"))


def _reachable(base_url: str) -> bool:
    """Whether Replicate could deliver webhooks to *base_url*: https, and not loopback or
    a private address (then the demo polls instead)."""
    parts = urlsplit(base_url)
    host = (parts.hostname or "").strip("[]")
    if parts.scheme != "https" or not host or is_local_host(host):
        return False
    try:
        return not ipaddress.ip_address(host).is_private
    except ValueError:
        return True  # a name: public as far as we can tell


def _request_all(client: httpx.Client) -> list[DemoJob]:
    """Ask for every piece at once, timing each trigger response."""

    def effect(prompt: str, duration: float) -> DemoJob:
        started = time.monotonic()
        answer = client.post("/api/sound-effects", json={"prompt": prompt, "duration": duration})
        answer.raise_for_status()
        effect_id = answer.json()["id"]
        return DemoJob(
            "sound_effect",
            f"effect {effect_id}, {duration:g} s",
            f"/api/sound-effects/{effect_id}",
            time.monotonic() - started,
            started,
        )

    def music(prompt: str, duration: float) -> DemoJob:
        started = time.monotonic()
        text_id = client.post("/api/texts", json={"content": "Chapter one."}).json()["id"]
        answer = client.post(
            f"/api/texts/{text_id}/background-music", json={"prompt": prompt, "duration": duration}
        )
        answer.raise_for_status()
        return DemoJob(
            "background_music",
            f"music {text_id}, {duration:g} s",
            f"/api/texts/{text_id}",
            time.monotonic() - started,
            started,
        )

    with ThreadPoolExecutor(max_workers=len(SOUND_EFFECTS) + 1) as pool:
        futures = [pool.submit(effect, *spec) for spec in SOUND_EFFECTS]
        futures.append(pool.submit(music, *MUSIC))
        return [future.result() for future in futures]


def _collect(job: DemoJob, row: dict[str, Any], folder: Path) -> None:
    """Write a finished job's audio to *folder* and measure it by decoding."""
    from .audio import probe

    column = "audio_data_b64" if job.kind == "sound_effect" else "background_music_audio_b64"
    fmt = row.get("audio_format") or row.get("background_music_format") or "bin"
    data = base64.b64decode(row[column])
    job.file = folder / f"{job.kind}-{job.status_url.rsplit('/', 1)[-1]}.{fmt}"
    job.file.write_bytes(data)
    info = probe(job.file, exact=True)
    job.duration, job.size = info.duration, info.size


def _table(jobs: list[DemoJob], *, final: bool) -> Any:
    """Per job: how fast the app answered, when the audio was stored, what was stored."""
    from rich.table import Table

    table = Table(title="replicate-audio demo" + (": results" if final else ": live"))
    for column in ("job", "status", "answer", "stored", "length", "size"):
        table.add_column(column, justify="left" if column in ("job", "status") else "right")
    for job in jobs:
        cells = [
            job.label,
            job.status if not job.error else f"{job.status}: {job.error}",
            f"{job.trigger_seconds * 1000:.0f} ms",
            f"{job.stored_seconds:.2f} s" if job.stored_seconds is not None else "…",
            f"{job.duration:.3f} s" if job.duration is not None else "",
            f"{job.size / 1024:.0f} KiB" if job.size is not None else "",
        ]
        table.add_row(*cells)
    return table


def _follow(client: httpx.Client, jobs: list[DemoJob], folder: Path, timeout: float) -> bool:
    from rich.live import Live

    deadline = time.monotonic() + timeout
    terminal = {"completed", "failed", "canceled", "dead"}
    with Live(_table(jobs, final=False), refresh_per_second=8, transient=True) as live:
        while time.monotonic() < deadline:
            for job in jobs:
                if job.status in terminal:
                    continue
                row = client.get(job.status_url).json()
                job.status, job.error = row["status"], row.get("error")
                if job.status == "completed":
                    job.stored_seconds = time.monotonic() - job.started
                    _collect(job, row, folder)
            live.update(_table(jobs, final=False))
            if all(job.status in terminal for job in jobs):
                return all(job.status == "completed" for job in jobs)
            time.sleep(0.1)
    return False


def run_demo(*, timeout: float = 30.0, folder: Path | None = None, port: int = 0) -> int:
    """Run the demo; returns the process exit code (0 when every job was stored).

    Example:
        >>> run_demo(timeout=30)  # doctest: +SKIP
        0
    """
    try:
        from rich.console import Console

        from .app import ReplicateAudio
        from .examples.catalog import Catalog, catalog_processors
        from .examples.fastapi_app import create_app
    except ImportError as error:
        raise SystemExit(
            f"the demo needs its extras: install replicate-audio[all] ({error})"
        ) from None
    from .testing import Faults, ReplicateSimulator

    console = Console()
    folder = folder or Path(tempfile.mkdtemp(prefix="replicate-audio-demo-"))
    folder.mkdir(parents=True, exist_ok=True)
    real = _real_replicate(dict(os.environ))
    polling = real and not _reachable(os.environ.get("BASE_URL", ""))
    if real and not polling and not os.environ.get("REPLICATE_WEBHOOK_SECRET"):
        # Without it every webhook would be refused with 401 and the demo would only time out.
        console.print(
            "The demo against the real Replicate needs REPLICATE_WEBHOOK_SECRET, the signing "
            "secret from GET https://api.replicate.com/v1/webhooks/default/secret."
        )
        return 1
    began = time.monotonic()
    with ExitStack() as stack:
        if real:
            environ = dict(os.environ)
            if polling:  # whatever BASE_URL says, it is not used
                environ["REPLICATE_AUDIO_MODE"] = "polling"
            settings = Settings.from_env(environ)
            settings = attrs.evolve(settings, database=str(folder / "replicate-audio.sqlite3"))
            sock = listen(port=port or 8000)
            if polling:
                console.print(
                    f"Using Replicate at {settings.api_base_url} in polling mode: BASE_URL "
                    f"({environ.get('BASE_URL') or 'unset'}) is not a public https address "
                    "Replicate could send webhooks to, so each prediction is followed by reading it"
                )
            else:
                console.print(f"Using the real Replicate; webhooks go to {settings.base_url}")
        else:
            # Every webhook arrives twice, in any order: the audio is still stored once.
            sim = stack.enter_context(
                ReplicateSimulator(run_time=1.0, faults=Faults(duplicates=2, out_of_order=True))
            )
            sock = listen(port=port)
            app_url = url_of(sock)
            settings = sim.settings(
                base_url=app_url, database=str(folder / "replicate-audio.sqlite3")
            )
            console.print(f"Replicate simulator at {sim.url}; the example app at {app_url}")
        catalog = Catalog(folder / "example-app.sqlite3")
        audio = ReplicateAudio(settings, processors=catalog_processors(catalog), sweep_interval=2)
        base = stack.enter_context(serve_asgi(create_app(catalog, audio), sock))
        client = stack.enter_context(httpx.Client(base_url=base, timeout=10))
        jobs = _request_all(client)
        ok = _follow(client, jobs, folder, timeout)
    console.print(_table(jobs, final=True))
    console.print(f"Written to {folder} ({time.monotonic() - began:.1f} s in all):")
    for job in jobs:
        console.print(f"  {job.file.name if job.file else '-'}  ({job.label})")
    console.print("  replicate-audio.sqlite3 (jobs, log), example-app.sqlite3 (the app's tables)")
    return 0 if ok else 1
