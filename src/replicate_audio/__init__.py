"""Webhook-driven Replicate audio generation: ask, answer at once, store the audio exactly once."""

from __future__ import annotations

from .__about__ import __version__
from .app import ReplicateAudio
from .config import AllowedOrigin, ReplicateAudioConfig, Settings
from .errors import (
    AudioProcessingError,
    ConfigurationError,
    DownloadError,
    DownloadTooLargeError,
    FutureTimestampError,
    InvalidContentIdError,
    InvalidPayloadError,
    InvalidSecretError,
    JobNotFoundError,
    MalformedHeaderError,
    MissingHeaderError,
    OutputExpiredError,
    PredictionError,
    ReplicateAudioError,
    SignatureMismatchError,
    StaleTimestampError,
    StorageError,
    TimestampError,
    UnknownContentTypeError,
    URLNotAllowedError,
    WebhookVerificationError,
)
from .intake import WebhookOutcome
from .jobs import Job, JobStatus
from .pipeline import process_webhook_result, replay
from .predictions import RetryPolicy, acreate_webhook_prediction, create_webhook_prediction
from .processors import (
    AudioPostProcessor,
    BackgroundMusicProcessor,
    ProcessingContext,
    SoundEffectProcessor,
    StemsProcessor,
    get_processor,
    register_processor,
)
from .webhooks import Prediction, WebhookEvent, verify_signature, verify_webhook

__all__ = [
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
