"""The web process killed (SIGKILL) while its create call is in flight, then restarted: the job
completes, stored once, with one prediction on Replicate."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from replicate_audio.jobs import JobStatus
from replicate_audio.storage import SQLiteStore, SyncStore
from replicate_audio.testing import Faults, ReplicateSimulator

HERE = Path(__file__).parent


def spare_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def web_process(environ: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Start tests/crash_app.py and wait until it answers; kill it on the way out."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, str(HERE / "crash_app.py")],
            env={**os.environ, **environ},
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{environ['CRASH_PORT']}/ready"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                if httpx.get(url, timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def ask_for_effect(port: int) -> None:
    """The user's request; its server is killed before it answers."""
    with contextlib.suppress(httpx.RemoteProtocolError):
        httpx.post(f"http://127.0.0.1:{port}/effects/7", timeout=30)


@pytest.mark.parametrize("webhooks", ["delivered", "lost"])
def test_a_create_killed_in_flight_is_followed_after_a_restart(
    tmp_path: Path, webhooks: str
) -> None:
    """Killed mid-create: delivered webhooks attach the prediction by the URL's job id; lost
    ones leave it to the sweep, which finds the prediction in Replicate's listing."""
    faults = Faults(answer_delay=1.5, drop_ratio=1.0 if webhooks == "lost" else 0.0)
    with ReplicateSimulator(run_time=0.3, faults=faults) as sim:
        port = spare_port()
        database = tmp_path / "jobs.sqlite3"
        environ = sim.environ(
            BASE_URL=f"http://127.0.0.1:{port}",
            CRASH_PORT=str(port),
            CRASH_DATABASE=str(database),
            REPLICATE_AUDIO_CREATE_TIMEOUT="0.5",
        )
        log = tmp_path / "web.log"
        with web_process(environ, log) as process:
            asking = threading.Thread(target=ask_for_effect, args=(port,), daemon=True)
            asking.start()
            sim.wait_until(lambda: len(sim.creates) == 1)  # the create is in flight
            process.send_signal(signal.SIGKILL)
            process.wait()
        sim.faults = Faults(drop_ratio=faults.drop_ratio)
        with web_process(environ, log), SyncStore(SQLiteStore(database)) as store:
            deadline = time.monotonic() + 20
            while not (jobs := store.list_jobs()) or not jobs[0].is_terminal:
                assert time.monotonic() < deadline, (jobs, log.read_text())
                time.sleep(0.05)
            [job] = jobs
            assert job.status is JobStatus.COMPLETED, (job, log.read_text())
            assert job.prediction_id == sim.creates[0].prediction_id
            assert len(sim.creates) == 1  # never two predictions for one job
            stored = store.get_audio("sound_effect", "7")
            assert stored is not None
            assert stored.job_id == job.id
            assert [entry.status for entry in store.list_logs(job.id)] == [JobStatus.COMPLETED]
