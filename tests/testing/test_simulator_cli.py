"""``replicate-audio simulator``: starts a simulator, prints how to reach it, stops on Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from replicate_audio.cli import build_parser, main


def test_simulator_command_prints_url_token_and_secret_and_serves() -> None:
    """It prints every variable an app needs (what ``sim.environ()`` holds, the output
    host included); the printed URL answers with the printed token and secret; Ctrl-C
    exits 0."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replicate_audio.cli",
            "simulator",
            "--port",
            "0",
            "--token",
            "r8_test",
            "--run-time",
            "0.1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline().strip() for _ in range(7)]
        values = dict(line.split("=", 1) for line in lines[2:])
        assert lines[0] == f"Replicate simulator listening on {values['REPLICATE_API_BASE_URL']}"
        assert values["REPLICATE_API_TOKEN"] == "r8_test"
        assert values["REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS"] == values["REPLICATE_API_BASE_URL"]
        assert values["REPLICATE_AUDIO_ALLOW_PRIVATE_OUTPUT_HOSTS"] == "1"
        response = httpx.get(
            f"{values['REPLICATE_API_BASE_URL']}/v1/webhooks/default/secret",
            headers={"Authorization": "Bearer r8_test"},
        )
        assert response.json() == {"key": values["REPLICATE_WEBHOOK_SECRET"]}
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0


def test_simulator_defaults() -> None:
    """The simulator subcommand listens on 127.0.0.1:8787 unless told otherwise."""
    args = build_parser().parse_args(["simulator"])
    assert (args.host, args.port, args.token) == ("127.0.0.1", 8787, None)


def test_a_command_is_required(capsys: pytest.CaptureFixture[str]) -> None:
    """Without a subcommand the CLI prints the commands and returns 2."""
    assert main([]) == 2
    assert "simulator" in capsys.readouterr().err
