"""The example Flask app under gunicorn with several sync worker processes, configured only
through the environment, against the simulator: deliveries of one job land on different
processes, and every piece of audio is still downloaded and stored exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from example_requests import request_audio, wait_terminal
from replicate_audio import JobStatus
from replicate_audio.storage import SQLiteStore, SyncStore
from replicate_audio.testing import Faults, ReplicateSimulator
from replicate_audio.testing.servers import listen, url_of

pytest.importorskip("gunicorn")
pytest.importorskip("flask")

WORKERS = 2
EXAMPLE_APP = "replicate_audio.examples.flask_app:create_app()"

# An app whose factory already uses the extension (say, a warm-up query) when gunicorn
# --preload builds it in the master process, before the workers are forked.
WARMED_APP = """
from replicate_audio.examples.flask_app import create_app as create_example_app


def create_app():
    app = create_example_app()
    extension = app.extensions["replicate_audio"]
    extension.call(extension.audio.get_audio, "sound_effect", "0")
    return app
"""


class Gunicorn:
    """A gunicorn master serving a Flask app on a socket this test bound."""

    def __init__(self, process: subprocess.Popen[bytes], url: str, folder: Path) -> None:
        self.process, self.url, self.folder = process, url, folder
        self.access_log = folder / "access.log"
        self.error_log = folder / "error.log"
        self.output = folder / "output.log"

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM (a graceful stop: workers drain and exit), then wait; SIGKILL as a last
        resort so no path leaves a server behind."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log(self) -> str:
        """gunicorn's log and whatever the processes wrote to stdout and stderr (warnings, and
        tracebacks from atexit handlers)."""
        logs = [self.error_log, self.output]
        return "".join(path.read_text(errors="replace") for path in logs if path.exists())

    def webhook_pids(self) -> set[str]:
        """The pids of the worker processes that answered a webhook delivery with 200."""
        pids = set()
        for line in self.access_log.read_text().splitlines():
            pid, method, path, status = line.split()
            if method == "POST" and path.startswith("/api/replicate-webhook/") and status == "200":
                pids.add(pid)
        return pids


def gunicorn_options() -> list[str]:
    """Options that keep gunicorn inside the test: no control socket in the home directory
    (gunicorn 24+ opens ``~/.gunicorn/gunicorn.ctl`` otherwise)."""
    from gunicorn.config import Config

    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []


@contextmanager
def gunicorn(
    simulator: ReplicateSimulator,
    folder: Path,
    options: Sequence[str] = (),
    app: str = EXAMPLE_APP,
) -> Iterator[Gunicorn]:
    """Serve *app* (a gunicorn app spec, importable from *folder*) with WORKERS sync workers."""
    sock = listen()
    url = url_of(sock)
    env = os.environ | simulator.environ(
        BASE_URL=url,
        REPLICATE_AUDIO_DATABASE=str(folder / "jobs.sqlite3"),
        EXAMPLE_APP_DATABASE=str(folder / "app.sqlite3"),
    )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        f"--bind=fd://{sock.fileno()}",
        f"--workers={WORKERS}",
        "--worker-class=sync",
        "--graceful-timeout=10",
        f"--access-logfile={folder / 'access.log'}",
        "--access-logformat=%(p)s %(m)s %(U)s %(s)s",
        f"--error-logfile={folder / 'error.log'}",
        *gunicorn_options(),
        *options,
        app,
    ]
    server: Gunicorn | None = None
    try:
        # The socket is bound here and handed over, so the port can never be taken meanwhile.
        with (folder / "output.log").open("wb") as output:
            process = subprocess.Popen(
                command,
                env=env,
                cwd=folder,
                pass_fds=[sock.fileno()],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        server = Gunicorn(process, url, folder)
        wait_ready(server)
        yield server
    finally:
        sock.close()
        if server is not None:
            server.stop()


def wait_ready(server: Gunicorn, timeout: float = 15) -> None:
    """Poll a route until gunicorn answers (a 404 for a row that does not exist yet)."""
    deadline = time.monotonic() + timeout
    while True:
        assert server.process.poll() is None, f"gunicorn exited early:\n{server.log()}"
        try:
            if httpx.get(f"{server.url}/api/sound-effects/0", timeout=1).status_code == 404:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"gunicorn did not answer:\n{server.log()}"
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("options", "app"),
    [([], EXAMPLE_APP), (["--preload"], EXAMPLE_APP), (["--preload"], "warmed_app:create_app()")],
    ids=["load-in-each-worker", "preload", "preload-used-before-fork"],
)
def test_several_worker_processes_store_each_piece_exactly_once(
    simulator: ReplicateSimulator, tmp_path: Path, options: list[str], app: str
) -> None:
    """6 sound effects and 4 music tracks at once, every webhook thrice and reordered, served by
    two gunicorn sync workers (app loaded in each worker, or once before forking, even one that
    already used the extension): deliveries reach both processes, each piece is downloaded and
    stored exactly once, and SIGTERM stops every process cleanly."""
    (tmp_path / "warmed_app.py").write_text(WARMED_APP)
    sim = simulator
    sim.faults = Faults(duplicates=3, out_of_order=True)
    with (
        gunicorn(sim, tmp_path, options, app) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        paths = request_audio(client, effects=6, tracks=4)
        rows = [wait_terminal(client, path, timeout=15) for path in paths]
        sim.wait_idle()
        assert server.stop() == 0, server.log()
    assert [row["status"] for row in rows] == ["completed"] * 10, server.log()
    assert all(row.get("audio_data_b64") or row.get("background_music_audio_b64") for row in rows)
    assert "Traceback" not in server.log(), server.log()
    assert len(server.webhook_pids()) == WORKERS, server.webhook_pids()
    job_ids = {row["job_id"] for row in rows}
    assert len(job_ids) == 10
    with SQLiteStore(tmp_path / "jobs.sqlite3") as database, SyncStore(database) as store:
        for job_id in job_ids:
            job = store.get_job(job_id)
            assert job is not None
            assert job.prediction_id is not None
            assert [d.prediction_id for d in sim.downloads].count(job.prediction_id) == 1, job_id
            assert [e.status for e in store.list_logs(job_id)] == [JobStatus.COMPLETED]
            stored = store.get_audio(job.content_type, job.content_id)
            assert stored is not None
            assert stored.job_id == job_id
            copies = [d for d in sim.deliveries if d.prediction_id == job.prediction_id and d.ok]
            assert len(copies) >= 6
