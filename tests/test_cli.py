"""The ``replicate-audio`` command: the demo as the main job, and the job tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from replicate_audio.audio import probe


def run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicate_audio.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        check=False,
    )


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    """`replicate-audio demo` stores 3 sound effects and 1 music track and reports them."""
    result = run("demo", "--folder", str(tmp_path), "--timeout", "30")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("completed") == 4
    files = sorted(tmp_path.glob("*.mp3"))
    assert [f.name.split("-")[0] for f in files] == ["background_music"] + ["sound_effect"] * 3
    lengths = sorted(round(probe(f, exact=True).duration, 2) for f in files)
    assert lengths == [2.0, 3.0, 4.0, 8.0]

    listed = run(
        "jobs", env={"REPLICATE_AUDIO_DATABASE": str(tmp_path / "replicate-audio.sqlite3")}
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("completed") == 4
    assert "background_music/1" in listed.stdout


def test_replay_of_unknown_job_fails_clearly(tmp_path: Path) -> None:
    """Replaying a job that does not exist exits 1 and says which id was not found."""
    env = {"REPLICATE_AUDIO_DATABASE": str(tmp_path / "jobs.sqlite3")}
    result = run("replay", "nope", env=env)
    assert result.returncode == 1
    assert "no job with id 'nope'" in result.stderr


def test_no_command_prints_help() -> None:
    """Without a subcommand the command lists them and exits 2."""
    result = run()
    assert result.returncode == 2
    for name in ("demo", "simulator", "jobs", "replay"):
        assert name in result.stderr
