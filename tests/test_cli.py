"""The ``replicate-audio`` command: the demo as the main job, and the job tools."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from replicate_audio import JobStatus
from replicate_audio.app import ReplicateAudio
from replicate_audio.audio import probe
from replicate_audio.cli import load_app
from replicate_audio.errors import ConfigurationError
from replicate_audio.examples.catalog import sound_effect_config
from replicate_audio.storage import Delivery, SQLiteStore
from replicate_audio.testing import Faults, ReplicateSimulator


def run(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "replicate_audio.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "120", **(env or {})},
        cwd=cwd,
        check=False,
    )


def test_demo_runs_to_completion(tmp_path: Path) -> None:
    """`replicate-audio demo` stores 3 sound effects and 1 music track and reports them."""
    folder = tmp_path / "new" / "folder"  # made by the demo
    started = time.monotonic()
    result = run("demo", "--folder", str(folder), "--timeout", "30")
    assert time.monotonic() - started < 30  # the whole command, start-up included
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("completed") == 4
    files = sorted(folder.glob("*.mp3"))
    assert [f.name.split("-")[0] for f in files] == ["background_music"] + ["sound_effect"] * 3
    lengths = sorted(round(probe(f, exact=True).duration, 2) for f in files)
    assert lengths == [2.0, 3.0, 4.0, 8.0]

    listed = run("jobs", env={"REPLICATE_AUDIO_DATABASE": str(folder / "replicate-audio.sqlite3")})
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("completed") == 4
    assert "background_music/1" in listed.stdout


def test_demo_against_real_replicate_needs_the_secret(tmp_path: Path) -> None:
    """With a token and a public https BASE_URL but no signing secret, the demo says what is
    missing and exits 1 at once, instead of timing out on webhooks it must refuse."""
    env = {
        "REPLICATE_API_TOKEN": "r8_x",
        "BASE_URL": "https://app.example.com",
        "REPLICATE_WEBHOOK_SECRET": "",
    }
    result = run("demo", "--folder", str(tmp_path), env=env, timeout=30)
    assert result.returncode == 1
    assert "needs REPLICATE_WEBHOOK_SECRET" in result.stdout


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


# An app's own facade, whose sound effects go through its own processor.
MY_AUDIO = """
from pathlib import Path

from replicate_audio import SoundEffectProcessor
from replicate_audio.app import ReplicateAudio


class MarkedEffects(SoundEffectProcessor):
    def store_audio(self, job, path, info, context):
        Path("stored-by-my-app.txt").write_text(f"{job.content_id} {info.duration:.2f}")
        return super().store_audio(job, path, info, context)


def create_audio():
    return ReplicateAudio(processors={"sound_effect": MarkedEffects()})


NOT_AN_APP = 3
"""


def test_replay_with_the_apps_own_processors(simulator: ReplicateSimulator, tmp_path: Path) -> None:
    """`replicate-audio replay ID --app my_audio:create_audio` runs a dead job through the
    app's own processor (the one its web process uses), not the built-in one."""
    database = tmp_path / "jobs.sqlite3"
    settings = simulator.settings(base_url="http://127.0.0.1:9")
    with SQLiteStore(database) as store:
        simulator.queue_faults(Faults(drop_ratio=1.0))  # the job is made dead by hand below
        audio = ReplicateAudio(settings, store)
        job = audio.generate_sync("sound_effect", 5, sound_effect_config("a door", 1.0))
        assert job.prediction_id is not None
        blocking = audio.blocking_store()
        prediction = simulator.wait_for_prediction(job.prediction_id)
        delivery = Delivery(webhook_id="w1", prediction=prediction, job_id=job.id)
        received = blocking.record_delivery(delivery).job
        assert received is not None
        assert received.status is JobStatus.RECEIVED
        assert blocking.claim_job(job.id, stale_after=60) is not None
        reason = "DownloadError: the outage outlasted the retries"
        processing = {JobStatus.PROCESSING}
        assert blocking.transition(job.id, expected=processing, new=JobStatus.DEAD, error=reason)
        blocking.close()
    (tmp_path / "my_audio.py").write_text(MY_AUDIO)
    env = simulator.environ(REPLICATE_AUDIO_DATABASE=str(database))
    result = run("replay", job.id, "--app", "my_audio:create_audio", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{job.id}  completed" in result.stdout
    assert (tmp_path / "stored-by-my-app.txt").read_text() == "5 1.00"
    listed = run("jobs", "--app", "my_audio:create_audio", env=env, cwd=tmp_path)
    assert f"{job.id}  {job.prediction_id}  completed  sound_effect/5" in listed.stdout


def test_replay_takes_a_prediction_id(simulator: ReplicateSimulator, tmp_path: Path) -> None:
    """`replicate-audio replay` finds a job by its prediction id too, and names the job; a
    job that is not dead is left as it is (exit 1, its status shown)."""
    database = tmp_path / "jobs.sqlite3"
    settings = simulator.settings(base_url="http://127.0.0.1:9")
    with SQLiteStore(database) as store:
        simulator.queue_faults(Faults(drop_ratio=1.0))
        audio = ReplicateAudio(settings, store)
        job = audio.generate_sync("sound_effect", 6, sound_effect_config("a door", 1.0))
        audio.blocking_store().close()
    assert job.prediction_id is not None
    env = simulator.environ(REPLICATE_AUDIO_DATABASE=str(database))
    result = run("replay", job.prediction_id, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.strip() == f"{job.id}  pending"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("my_audio", "must look like package.module:audio"),
        ("no_such_module:audio", "cannot load 'no_such_module:audio'"),
        ("my_audio:missing", "cannot load 'my_audio:missing'"),
        ("my_audio:NOT_AN_APP", "'my_audio:NOT_AN_APP' is a int, not a ReplicateAudio"),
    ],
)
def test_app_that_cannot_be_loaded_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, message: str
) -> None:
    """A malformed, missing or wrong --app is a ConfigurationError naming --app and the spec;
    the command prints it and exits 1."""
    (tmp_path / "my_audio.py").write_text(MY_AUDIO)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "my_audio", raising=False)
    with pytest.raises(ConfigurationError, match="--app") as raised:
        load_app(spec)
    assert message in str(raised.value)
    env = {"REPLICATE_AUDIO_DATABASE": str(tmp_path / "jobs.sqlite3")}
    result = run("replay", "x", "--app", spec, env=env, cwd=tmp_path)
    assert result.returncode == 1
    assert message in result.stderr


def test_reconcile_dry_run_then_for_real(simulator: ReplicateSimulator, tmp_path: Path) -> None:
    """`replicate-audio reconcile --dry-run` lists each unfinished job with its status on
    Replicate and records nothing; without --dry-run the ended prediction is recorded and
    its job processed (by the app's dispatcher) before the command returns."""
    database = tmp_path / "jobs.sqlite3"
    settings = simulator.settings(base_url="http://127.0.0.1:9")
    with SQLiteStore(database) as store:
        simulator.queue_faults(Faults(drop_ratio=1.0))  # its webhooks are all lost
        audio = ReplicateAudio(settings, store, sweep_interval=0)
        job = audio.generate_sync("sound_effect", 5, sound_effect_config("a door", 1.0))
        assert job.prediction_id is not None
        simulator.wait_for_prediction(job.prediction_id)
        audio.blocking_store().close()
    env = simulator.environ(REPLICATE_AUDIO_DATABASE=str(database))
    dry = run("reconcile", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stdout + dry.stderr
    line = f"{job.id}  {job.prediction_id}  succeeded   "
    assert f"{line}would record its end; the job is pending" in dry.stdout
    assert "1 unfinished jobs looked at; would record 1" in dry.stdout
    assert f"{job.id}  {job.prediction_id}  pending" in run("jobs", env=env).stdout
    done = run("reconcile", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{line}recorded its end; the job is completed" in done.stdout
    assert "1 unfinished jobs looked at; recorded 1" in done.stdout
    again = run("reconcile", env=env)
    assert "0 unfinished jobs looked at; recorded 0" in again.stdout


def test_worker_takes_the_recovery_options() -> None:
    """`replicate-audio worker --help` lists the recovery knobs with their variables."""
    shown = run("worker", "--help").stdout
    for option, variable in (
        ("--lease", "REPLICATE_AUDIO_LEASE"),
        ("--sweep-interval", "REPLICATE_AUDIO_SWEEP_INTERVAL"),
        ("--reconcile-after", "REPLICATE_AUDIO_RECONCILE_AFTER"),
    ):
        assert option in shown
        assert variable in shown


def test_demo_polls_when_replicate_cannot_reach_the_app(
    simulator: ReplicateSimulator, tmp_path: Path
) -> None:
    """With a token and a BASE_URL Replicate cannot reach (loopback http), the demo says it
    polls and completes every job with no webhook; the API is the simulator here."""
    env = simulator.environ(BASE_URL="http://127.0.0.1:8000")
    env.pop("REPLICATE_WEBHOOK_SECRET", None)  # polling needs no signing secret
    result = run("demo", "--folder", str(tmp_path), "--timeout", "30", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "in polling mode" in result.stdout
    assert result.stdout.count("completed") == 4
    assert all("webhook" not in create.body for create in simulator.creates)
    assert simulator.deliveries == []


def test_verify_says_why_a_captured_delivery_is_refused(tmp_path: Path) -> None:
    """`replicate-audio verify` exits 0 for a delivery the route would take (headers as a
    JSON object or as lines from a log), and 1 naming the reason: a changed body, a stale
    timestamp (by how much), a wrong secret; --any-time checks an old capture as of its
    own timestamp."""
    import json

    from replicate_audio.testing import generate_secret, sign_webhook

    secret = generate_secret()
    body = b'{"id": "p1", "status": "succeeded", "output": "https://replicate.delivery/a.mp3"}'
    fresh = sign_webhook(body, secret, webhook_id="msg_fresh")
    old = sign_webhook(body, secret, webhook_id="msg_old", timestamp=int(time.time()) - 3600)
    (tmp_path / "body.json").write_bytes(body)
    (tmp_path / "tampered.json").write_bytes(body.replace(b"succeeded", b"failed"))
    (tmp_path / "fresh.json").write_text(json.dumps(fresh))
    lines = "POST /api/replicate-webhook/sound_effect/1 HTTP/1.1\n" + "".join(
        f"{name}: {value}\n" for name, value in old.items()
    )
    (tmp_path / "old.txt").write_text(lines)
    env = {"REPLICATE_WEBHOOK_SECRET": secret}

    def verify(headers: str, body: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return run("verify", "--headers", str(tmp_path / headers), "--body",
                   str(tmp_path / body), *extra, env=env)  # fmt: skip

    ok = verify("fresh.json", "body.json")
    assert (ok.returncode, ok.stdout.strip()) == (0, "valid: msg_fresh, prediction p1 succeeded")
    tampered = verify("fresh.json", "tampered.json")
    assert tampered.returncode == 1
    assert "invalid: no v1 signature matches" in tampered.stderr
    stale = verify("old.txt", "body.json")
    assert stale.returncode == 1
    assert re.search(r"timestamp is 360[0-9]s old, more than the tolerance of 300s", stale.stderr)
    assert verify("old.txt", "body.json", "--any-time").returncode == 0
    other = verify("fresh.json", "body.json", "--secret", generate_secret())
    assert other.returncode == 1
    assert "no v1 signature matches" in other.stderr


def test_secret_prints_the_accounts_signing_secret(simulator: ReplicateSimulator) -> None:
    """`replicate-audio secret` reads GET /v1/webhooks/default/secret with the token; with no
    token it says which variable to set."""
    shown = run("secret", env=simulator.environ())
    assert (shown.returncode, shown.stdout.strip()) == (0, simulator.secret)
    missing = run("secret", env={"REPLICATE_API_TOKEN": ""})
    assert missing.returncode == 1
    assert "REPLICATE_API_TOKEN" in missing.stderr
