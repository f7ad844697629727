"""The public surface: ``replicate_audio.__all__`` pinned, and every name in it importable."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import replicate_audio

EXPORTED = [
    "AllowedOrigin",
    "AudioPostProcessor",
    "AudioProcessingError",
    "BackgroundMusicProcessor",
    "ConfigurationError",
    "DownloadError",
    "DownloadTooLargeError",
    "FutureTimestampError",
    "InvalidContentIdError",
    "InvalidPayloadError",
    "InvalidSecretError",
    "Job",
    "JobNotFoundError",
    "JobStatus",
    "MalformedHeaderError",
    "MissingHeaderError",
    "OutputExpiredError",
    "Prediction",
    "PredictionError",
    "ProcessingContext",
    "ReplicateAudio",
    "ReplicateAudioConfig",
    "ReplicateAudioError",
    "RetryPolicy",
    "Settings",
    "SignatureMismatchError",
    "SoundEffectProcessor",
    "StaleTimestampError",
    "StemsProcessor",
    "StorageError",
    "TimestampError",
    "URLNotAllowedError",
    "UnknownContentTypeError",
    "WebhookEvent",
    "WebhookOutcome",
    "WebhookVerificationError",
    "__version__",
    "acreate_webhook_prediction",
    "create_webhook_prediction",
    "get_processor",
    "process_webhook_result",
    "register_processor",
    "replay",
    "verify_signature",
    "verify_webhook",
]


def test_exported_names_are_pinned() -> None:
    """``__all__`` is exactly this sorted list: adding or dropping a public name is a decision
    made here, not a side effect."""
    assert sorted(EXPORTED) == EXPORTED
    assert replicate_audio.__all__ == EXPORTED


@pytest.mark.parametrize("name", EXPORTED)
def test_every_exported_name_is_importable(name: str) -> None:
    """``from replicate_audio import <name>`` works, and gives the library's own object."""
    namespace: dict[str, object] = {}
    exec(f"from replicate_audio import {name}", namespace)
    exported = namespace[name]
    assert exported is getattr(replicate_audio, name)
    if name != "__version__":
        assert getattr(exported, "__module__", "").startswith("replicate_audio.")


def test_star_import_gives_exactly_the_exported_names() -> None:
    """``from replicate_audio import *`` brings in ``__all__`` and nothing else."""
    namespace: dict[str, object] = {}
    exec("from replicate_audio import *", namespace)
    assert sorted(name for name in namespace if name != "__builtins__") == EXPORTED


def test_version_is_a_version_string() -> None:
    """``__version__`` is the package's version, as packaging metadata reports it."""
    from importlib.metadata import version

    assert replicate_audio.__version__ == version("replicate-audio")


@pytest.mark.parametrize(
    ("module", "name", "home"),
    [
        ("replicate_audio.predictions", "RetryPolicy", "replicate_audio.retries"),
        ("replicate_audio.webhooks", "parse_secrets", "replicate_audio.config"),
        ("replicate_audio.pipeline", "register_processor", "replicate_audio.processors"),
        ("replicate_audio.pipeline", "get_processor", "replicate_audio.processors"),
        ("replicate_audio.app", "WebhookOutcome", "replicate_audio.intake"),
    ],
)
def test_moved_names_are_still_importable_from_their_old_homes(
    module: str, name: str, home: str
) -> None:
    """A name that moved is still importable where it used to live, as the same object."""
    assert getattr(importlib.import_module(module), name) is getattr(
        importlib.import_module(home), name
    )


def test_the_background_module_is_now_recovery() -> None:
    """The sweep lives in ``replicate_audio.recovery``; ``replicate_audio.background`` is gone."""
    assert importlib.import_module("replicate_audio.recovery").BackgroundWork
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("replicate_audio.background")


def test_importing_the_package_needs_no_optional_extra() -> None:
    """``import replicate_audio`` loads neither a web framework nor SQLAlchemy nor Dramatiq:
    optional integrations are imported on first use."""
    optional = ["fastapi", "flask", "sqlalchemy", "dramatiq", "prometheus_client"]
    code = (
        "import sys, replicate_audio, replicate_audio.storage; "
        f"print([m for m in {optional!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
