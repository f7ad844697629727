"""The one exception tree of replicate-audio; every error a public function raises is here.

```
ReplicateAudioError
├── ConfigurationError            a setting or environment variable is malformed
├── UnknownContentTypeError       no processor is registered for a content type
├── InvalidContentIdError         a content id is not URL-safe
├── JobNotFoundError              no job has that id
├── StorageError                  the job or audio store failed (the backend is down)
├── WebhookVerificationError      a delivery was refused; answer 401 or 400
│   ├── MissingHeaderError            a webhook-* header is absent or empty
│   ├── MalformedHeaderError          a header is present but not of its form
│   ├── InvalidSecretError            the configured secret is not whsec_<base64>
│   ├── TimestampError                outside the tolerance
│   │   ├── StaleTimestampError
│   │   └── FutureTimestampError
│   ├── SignatureMismatchError        no v1 signature matches any secret
│   └── InvalidPayloadError           signed, but the body is not a prediction (400)
├── PredictionError               Replicate refused or failed to create a prediction
├── DownloadError                 the output could not be fetched
│   ├── URLNotAllowedError            scheme, host or address refused before connecting
│   ├── DownloadTooLargeError         the body exceeds REPLICATE_AUDIO_MAX_AUDIO_BYTES
│   └── OutputExpiredError            410 / data_removed: permanent
└── AudioProcessingError          the audio could not be decoded, trimmed or encoded
```
"""

from __future__ import annotations

__all__ = [
    "AudioProcessingError",
    "ConfigurationError",
    "DownloadError",
    "DownloadTooLargeError",
    "FutureTimestampError",
    "InvalidContentIdError",
    "InvalidPayloadError",
    "InvalidSecretError",
    "JobNotFoundError",
    "MalformedHeaderError",
    "MissingHeaderError",
    "OutputExpiredError",
    "ReadRoutesNotMounted",
    "PredictionError",
    "ReplicateAudioError",
    "SignatureMismatchError",
    "StaleTimestampError",
    "StorageError",
    "TimestampError",
    "URLNotAllowedError",
    "UnknownContentTypeError",
    "WebhookVerificationError",
]


class ReplicateAudioError(Exception):
    """The root of every error raised by replicate-audio."""


class ConfigurationError(ReplicateAudioError):
    """A setting is malformed; the message names the variable and what it must be."""

    def __init__(self, variable: str, message: str) -> None:
        self.variable = variable
        super().__init__(f"{variable}: {message}")


class UnknownContentTypeError(ReplicateAudioError):
    """No processor is registered for this content type."""

    def __init__(self, content_type: str, known: tuple[str, ...] = ()) -> None:
        self.content_type = content_type
        hint = f" (registered: {', '.join(known)})" if known else ""
        super().__init__(f"unknown content type {content_type!r}{hint}")


class InvalidContentIdError(ReplicateAudioError):
    """A content id must be 1-128 URL-safe characters (letters, digits, ``-._~``)."""


class JobNotFoundError(ReplicateAudioError):
    """No job has this id."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        super().__init__(f"no job with id {job_id!r}")


class StorageError(ReplicateAudioError):
    """A store could not be read or written; the caller should retry later."""


class WebhookVerificationError(ReplicateAudioError):
    """A webhook delivery was refused: its signature, timestamp or body is not acceptable."""

    #: The HTTP status an adapter answers with.
    status_code: int = 401


class MissingHeaderError(WebhookVerificationError):
    """A required ``webhook-*`` header is absent or empty."""

    def __init__(self, header: str) -> None:
        self.header = header
        super().__init__(f"missing required header {header!r}")


class MalformedHeaderError(WebhookVerificationError):
    """A ``webhook-*`` header is present but not of the form the standard gives."""

    def __init__(self, header: str, reason: str) -> None:
        self.header = header
        super().__init__(f"malformed header {header!r}: {reason}")


class InvalidSecretError(WebhookVerificationError):
    """A configured signing secret is not ``whsec_`` followed by base64."""


class TimestampError(WebhookVerificationError):
    """The ``webhook-timestamp`` is outside the accepted tolerance."""

    def __init__(self, timestamp: int, now: float, tolerance: int) -> None:
        self.timestamp = timestamp
        self.now = now
        self.tolerance = tolerance
        super().__init__(self._describe())

    def _describe(self) -> str:
        # Raised as such only when the clock itself cannot be used (now or tolerance not a
        # finite number): the delivery is refused rather than let through unchecked.
        return (
            f"timestamp {self.timestamp} cannot be checked against now={self.now!r} "
            f"with a tolerance of {self.tolerance!r}s"
        )


class StaleTimestampError(TimestampError):
    """The delivery is older than the tolerance allows (a replay, or a very late retry)."""

    def _describe(self) -> str:
        age = int(self.now - self.timestamp)
        return f"timestamp is {age}s old, more than the tolerance of {self.tolerance}s"


class FutureTimestampError(TimestampError):
    """The delivery claims a time further ahead than the tolerance allows."""

    def _describe(self) -> str:
        ahead = int(self.timestamp - self.now)
        return f"timestamp is {ahead}s in the future, more than the tolerance of {self.tolerance}s"


class SignatureMismatchError(WebhookVerificationError):
    """No ``v1`` signature in the header matches any configured secret."""


class InvalidPayloadError(WebhookVerificationError):
    """The signature is valid but the body is not JSON, or not a prediction."""

    status_code = 400


class PredictionError(ReplicateAudioError):
    """Replicate refused to create (or could not be reached to create) a prediction."""

    def __init__(self, message: str, *, status: int | None = None, detail: str | None = None):
        self.status = status
        self.detail = detail
        super().__init__(message)


class DownloadError(ReplicateAudioError):
    """The prediction's output could not be downloaded."""

    #: False when trying again cannot help (4xx, expired file, refused URL).
    retryable: bool = True

    def __init__(self, message: str, *, url: str | None = None, retryable: bool | None = None):
        self.url = url
        if retryable is not None:
            self.retryable = retryable
        super().__init__(message)


class URLNotAllowedError(DownloadError):
    """The output URL was refused before any connection: scheme, host or address."""

    retryable = False


class DownloadTooLargeError(DownloadError):
    """The output is larger than ``REPLICATE_AUDIO_MAX_AUDIO_BYTES``."""

    retryable = False


class OutputExpiredError(DownloadError):
    """Replicate removed the output (410 Gone or ``data_removed``); it cannot come back."""

    retryable = False


class AudioProcessingError(ReplicateAudioError):
    """The audio could not be decoded, trimmed or encoded."""


class ReadRoutesNotMounted(UserWarning):
    """A warning, not an error: an adapter left out the read routes (the job route), since
    neither ``authorize`` nor ``public=True`` was given."""
