"""Drive the example apps over HTTP: ask for audio in parallel, wait for each piece."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from replicate_audio.jobs import JobStatus

#: The statuses after which a job changes no more (completed, failed, canceled, aborted, dead).
TERMINAL = tuple(status.value for status in JobStatus if status.is_terminal)


def request_audio(client: httpx.Client, *, effects: int, tracks: int) -> list[str]:
    """Ask for *effects* sound effects and *tracks* music tracks at once; returns the paths
    that show each one's status."""

    def effect(n: int) -> str:
        answer = client.post("/api/sound-effects", json={"prompt": f"boom {n}", "duration": 1})
        assert answer.status_code == 202, answer.text
        return f"/api/sound-effects/{answer.json()['id']}"

    def music(n: int) -> str:
        text = client.post("/api/texts", json={"content": f"text {n}"}).json()["id"]
        answer = client.post(f"/api/texts/{text}/background-music", json={"duration": 2})
        assert answer.status_code == 202, answer.text
        return f"/api/texts/{text}"

    with ThreadPoolExecutor(max_workers=max(1, effects + tracks)) as pool:
        futures = [pool.submit(effect, n) for n in range(effects)]
        futures += [pool.submit(music, n) for n in range(tracks)]
        return [future.result() for future in futures]


def wait_terminal(client: httpx.Client, path: str, timeout: float = 30) -> dict[str, Any]:
    """Poll *path* until its job has finished; returns the row."""
    deadline = time.monotonic() + timeout
    while True:
        row: dict[str, Any] = client.get(path).json()
        if row["status"] in TERMINAL:
            return row
        assert time.monotonic() < deadline, f"{path} still {row['status']}"
        time.sleep(0.05)
