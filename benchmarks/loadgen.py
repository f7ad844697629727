"""Drive a server with wrk: serve an app in a process of its own (uvicorn or gunicorn) on a spare
127.0.0.1 port, hand wrk pre-signed requests through ``deliveries.lua``, and read its results."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import attrs

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "deliveries.lua"
INSTALL_HINT = "install it with `bash benchmarks/setup.sh` (or `apt-get install -y wrk`)"


@attrs.frozen
class SignedRequest:
    """One POST as wrk sends it: path (with its query), headers and body."""

    path: str
    headers: Mapping[str, str]
    body: bytes

    def line(self) -> str:
        """The request as one line of ``deliveries.lua``'s file format (tab-separated)."""
        fields = [self.path, self.body.decode(), *(f"{k}: {v}" for k, v in self.headers.items())]
        if any(c in field for field in fields for c in "\t\r\n") or not all(fields):
            raise ValueError(f"a request field is empty or has a tab or newline: {fields!r}")
        return "\t".join(fields)


@attrs.frozen
class Run:
    """What one wrk run measured; latencies in seconds."""

    requests: int
    seconds: float
    p50: float
    p99: float
    max: float
    statuses: Mapping[int, int]
    socket_errors: int
    repeats: int
    deliveries: int

    @property
    def rate(self) -> float:
        """Requests answered per second."""
        return self.requests / self.seconds

    @property
    def non_2xx(self) -> int:
        """Answers with a status outside 200-299."""
        return sum(count for status, count in self.statuses.items() if not 200 <= status < 300)


def missing_tools() -> list[str]:
    """What this machine lacks to run :func:`wrk`, each with how to get it."""
    missing = [] if shutil.which("wrk") else [f"wrk is not installed: {INSTALL_HINT}"]
    for module in ("uvicorn", "gunicorn"):
        try:
            __import__(module)
        except ImportError:
            missing.append(f"{module} is not installed: {INSTALL_HINT}")
    return missing


def write_requests(requests: Sequence[SignedRequest], prefix: Path, threads: int) -> Path:
    """Split *requests* over one file per wrk thread (``prefix.0``, ``prefix.1``, ...)."""
    for index in range(threads):
        lines = [request.line() for request in requests[index::threads]]
        Path(f"{prefix}.{index}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return prefix


def wrk(
    url: str, requests: Path, *, seconds: float, connections: int, threads: int, log: Path
) -> Run:
    """Run wrk against *url* for *seconds*, sending the requests of the files at *requests*."""
    command = [
        "wrk",
        f"--threads={threads}",
        f"--connections={connections}",
        f"--duration={max(1, round(seconds))}s",
        "--timeout=10s",  # slow answers are measured, not dropped as timeouts at wrk's 2 s
        "--latency",
        f"--script={SCRIPT}",
        url,
        "--",
        str(requests),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    with log.open("a", encoding="utf-8") as file:
        file.write(f"$ {' '.join(command)}\n{done.stdout}{done.stderr}\n")
    lines = [line for line in done.stdout.splitlines() if line.startswith("WRK_RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}), see {log}: {done.stderr.strip()}")
    result = json.loads(lines[-1].removeprefix("WRK_RESULT "))
    return Run(
        requests=result["requests"],
        seconds=result["duration_us"] / 1e6,
        p50=result["p50_us"] / 1e6,
        p99=result["p99_us"] / 1e6,
        max=result["max_us"] / 1e6,
        statuses={int(status): count for status, count in result["statuses"].items()},
        socket_errors=sum(
            result[kind] for kind in ("connect_errors", "read_errors", "write_errors", "timeouts")
        ),
        repeats=result["repeats"],
        deliveries=result["deliveries"],
    )


def spare_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(server: str, factory: str, port: int, *, threads: int) -> list[str]:
    """The command that serves ``intake_apps.<factory>`` with one worker process."""
    if server == "uvicorn":
        return [
            *(sys.executable, "-m", "uvicorn", "--factory", f"intake_apps:{factory}"),
            *("--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port)),
            *("--no-access-log", "--log-level", "warning"),
        ]
    return [
        *(sys.executable, "-m", "gunicorn", f"intake_apps:{factory}()", "--chdir", str(HERE)),
        *("--bind", f"127.0.0.1:{port}", "--workers", "1", "--worker-class", "gthread"),
        *("--threads", str(threads), "--log-level", "warning"),
    ]


def _wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, path: str) -> None:
    deadline = time.monotonic() + 60
    host, port = url.removeprefix("http://").split(":")
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: see {log}")
        connection = http.client.HTTPConnection(host, int(port), timeout=5)
        try:
            connection.request("GET", path)
            if connection.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.1)
    raise RuntimeError(f"server did not answer {path} within 60 s: see {log}")


@contextmanager
def serve(
    server: str,
    factory: str,
    *,
    environ: Mapping[str, str],
    log: Path,
    ready: str,
    threads: int,
) -> Iterator[str]:
    """Serve ``intake_apps.<factory>`` with *server* (``uvicorn`` or ``gunicorn``) in a process
    of its own until the block ends; yields its base URL once *ready* answers 200."""
    port = spare_port()
    url = f"http://127.0.0.1:{port}"
    command = server_command(server, factory, port, threads=threads)
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, env={**os.environ, **environ}, stdout=output, stderr=subprocess.STDOUT
        )
    try:
        _wait_ready(url, process, log, ready)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
