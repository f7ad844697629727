"""Verify Replicate's signed webhooks (Standard Webhooks) and parse the prediction they carry."""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from .config import parse_secrets
from .errors import (
    FutureTimestampError,
    InvalidPayloadError,
    MalformedHeaderError,
    MissingHeaderError,
    SignatureMismatchError,
    StaleTimestampError,
    TimestampError,
)
from .jobs import PREDICTION_STATUSES, TERMINAL_PREDICTION_STATUSES
from .outputs import output_files

__all__ = [
    "PREDICTION_STATUSES",
    "Prediction",
    "WebhookEvent",
    "parse_secrets",
    "is_prediction_id",
    "verify_signature",
    "verify_webhook",
]

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_STATUS = re.compile(r"[a-z_]{1,32}")
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,256}")


def _optional_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def _optional_dict(data: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    value = data.get(key)
    return dict(value) if isinstance(value, dict) else None


@attrs.frozen
class Prediction:
    """A Replicate prediction as a webhook or ``GET /v1/predictions/{id}`` gives it.

    Unknown fields are kept in :attr:`raw`; known ones of the wrong type become ``None``.

    Example:
        >>> p = Prediction.from_dict({"id": "abc", "status": "succeeded", "output": "https://x/a.mp3"})
        >>> p.output_urls
        ('https://x/a.mp3',)
    """

    id: str
    #: One of :data:`~replicate_audio.jobs.PREDICTION_STATUSES`, or a status Replicate added
    #: since (kept as sent; :attr:`is_known` tells).
    status: str
    output: Any = None
    error: str | None = None
    logs: str | None = None
    metrics: dict[str, Any] | None = None
    urls: dict[str, Any] | None = None
    version: str | None = None
    model: str | None = None
    created_at: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    raw: dict[str, Any] = attrs.field(factory=dict, repr=False, eq=False, hash=False)

    @classmethod
    def from_dict(cls, data: Any) -> Prediction:
        """Build a prediction from decoded JSON.

        Raises:
            InvalidPayloadError: *data* is not an object with a string ``id`` and a string
                ``status``.
        """
        if not isinstance(data, dict):
            raise InvalidPayloadError(
                f"a prediction must be a JSON object, not {type(data).__name__}"
            )
        prediction_id, status = data.get("id"), data.get("status")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise InvalidPayloadError("the prediction has no string 'id'")
        if not is_prediction_id(prediction_id):
            raise InvalidPayloadError(
                "the prediction 'id' must be 1-256 printable ASCII characters"
            )
        if not isinstance(status, str) or not _STATUS.fullmatch(status):
            raise InvalidPayloadError(
                f"the prediction status {status!r} is not a status (known: "
                f"{sorted(PREDICTION_STATUSES)})"
            )
        return cls(
            id=prediction_id,
            status=status,
            output=data.get("output"),
            error=_optional_str(data, "error"),
            logs=_optional_str(data, "logs"),
            metrics=_optional_dict(data, "metrics"),
            urls=_optional_dict(data, "urls"),
            version=_optional_str(data, "version"),
            model=_optional_str(data, "model"),
            created_at=_optional_str(data, "created_at"),
            started_at=_optional_str(data, "started_at"),
            completed_at=_optional_str(data, "completed_at"),
            raw=data,
        )

    @property
    def is_terminal(self) -> bool:
        """True once the prediction succeeded, failed, was canceled or aborted."""
        return self.status in TERMINAL_PREDICTION_STATUSES

    @property
    def is_known(self) -> bool:
        """Whether the status is one Replicate documents today."""
        return self.status in PREDICTION_STATUSES

    @property
    def output_urls(self) -> tuple[str, ...]:
        """The URLs (or ``data:`` URIs) of every output file, in order, however nested."""
        return tuple(file.url for file in output_files(self.output))


@attrs.frozen
class WebhookEvent:
    """One verified delivery: its ``webhook-id``, its timestamp and the prediction it carries."""

    webhook_id: str
    timestamp: int
    prediction: Prediction


_SIGNED_HEADERS = ("webhook-id", "webhook-timestamp", "webhook-signature")


def _signed_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The three Standard Webhooks headers, read in one pass (names case-insensitive)."""
    try:
        items = list(headers.items())
    except (AttributeError, TypeError):
        raise MalformedHeaderError(_SIGNED_HEADERS[0], "headers must be a mapping") from None
    found: dict[str, object] = {}
    for key, value in items:
        name = key.lower() if isinstance(key, str) else None
        if name in _SIGNED_HEADERS:
            if name in found:
                raise MalformedHeaderError(name, "appears more than once")
            found[name] = value
    values: dict[str, str] = {}
    for name in _SIGNED_HEADERS:  # in this order, so the first missing one is named
        given = found.get(name)
        if given is None or (isinstance(given, str) and not given.strip()):
            raise MissingHeaderError(name)
        if not isinstance(given, str):
            raise MalformedHeaderError(name, "the value is not text")
        values[name] = given.strip()
    return values


def is_prediction_id(value: object) -> bool:
    """Whether *value* can be a prediction id (and so a job id): 1-256 printable ASCII
    characters. Replicate's are 26 lowercase base32 ones; control characters, spaces and
    non-ASCII never are, and some databases refuse them.

    Example:
        >>> is_prediction_id("ufawqhfynnddngldkgtslldrkq"), is_prediction_id("a b")
        (True, False)
    """
    return isinstance(value, str) and _PRINTABLE_ID.fullmatch(value) is not None


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are not JSON (Python's parser takes them; databases do not)."""
    raise ValueError(f"{name} is not JSON")


# One decoder for every body: json.loads with an option builds a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)


@functools.lru_cache(maxsize=16)
def _cached_keys(secrets: str | tuple[str, ...]) -> tuple[bytes, ...]:
    return parse_secrets(secrets)


def _keys(secrets: str | Sequence[str]) -> tuple[bytes, ...]:
    """The decoded keys; the same secrets (the app's, every delivery) are decoded once."""
    if isinstance(secrets, str | tuple):
        try:
            return _cached_keys(secrets)
        except TypeError:  # an unhashable entry: parse_secrets says what is wrong with it
            pass
    return parse_secrets(secrets)


def _is_clock(value: object) -> bool:
    """A finite real number of seconds."""
    return isinstance(value, int | float) and math.isfinite(value)


def _sign(key: bytes, webhook_id: str, timestamp: str, body: bytes) -> bytes:
    content = f"{webhook_id}.{timestamp}.".encode() + body
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest())


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: str | Sequence[str],
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> tuple[str, int]:
    """Check a delivery's headers and signature over the raw *body*, without parsing it.

    Returns:
        The ``webhook-id`` and the timestamp.

    Raises:
        WebhookVerificationError: a subclass naming what is wrong.

    Example:
        >>> from replicate_audio.testing import sign_webhook
        >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        >>> headers = sign_webhook(b"{}", secret, webhook_id="msg_1", timestamp=1000)
        >>> verify_signature(headers, b"{}", secret, now=1000)
        ('msg_1', 1000)
    """
    signed = _signed_headers(headers)
    webhook_id = signed["webhook-id"]
    if not _PRINTABLE_ID.fullmatch(webhook_id):
        raise MalformedHeaderError("webhook-id", "must be 1-256 printable ASCII characters")
    raw_timestamp = signed["webhook-timestamp"]
    if not _TIMESTAMP.fullmatch(raw_timestamp):
        raise MalformedHeaderError("webhook-timestamp", "must be whole seconds since the epoch")
    signature_header = signed["webhook-signature"]
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidPayloadError(f"the body must be bytes, not {type(body).__name__}")
    keys = _keys(secrets)

    timestamp = int(raw_timestamp)
    current = time.time() if now is None else now
    if not _is_clock(current) or not _is_clock(tolerance) or tolerance < 0:
        # Fail closed: nothing compares true with NaN, so no timestamp could ever be stale.
        raise TimestampError(timestamp, current, tolerance)
    if timestamp < current - tolerance:
        raise StaleTimestampError(timestamp, current, tolerance)
    if timestamp > current + tolerance:
        raise FutureTimestampError(timestamp, current, tolerance)

    candidates: list[bytes] = []
    for entry in signature_header.split():
        version, comma, signature = entry.partition(",")
        # A comma inside the signature is how some servers join a repeated header.
        if not comma or not version or not signature or "," in signature:
            raise MalformedHeaderError(
                "webhook-signature", f"entry {entry[:16]!r} is not of the form v1,<base64>"
            )
        if version == "v1" and signature.isascii():
            candidates.append(signature.encode("ascii"))
    if not candidates:
        raise MalformedHeaderError("webhook-signature", "has no v1 signature")

    raw = bytes(body)
    for key in keys:
        expected = _sign(key, webhook_id, raw_timestamp, raw)
        # Compare against every candidate so the time taken does not tell which one matched.
        matched = [hmac.compare_digest(expected, candidate) for candidate in candidates]
        if any(matched):
            return webhook_id, timestamp
    raise SignatureMismatchError("no v1 signature matches the configured secret(s)")


def verify_webhook(
    headers: Mapping[str, str],
    body: bytes,
    secrets: str | Sequence[str],
    *,
    tolerance: int = 300,
    now: float | None = None,
) -> WebhookEvent:
    """Verify a Replicate webhook delivery and parse the prediction it carries.

    The signature is checked over the raw bytes first; the body is parsed only once it is
    known to come from Replicate.

    Args:
        headers: the request headers (names are matched case-insensitively).
        body: the raw request body, exactly as received.
        secrets: ``whsec_...``, or several for rotation (a sequence, or one string separated
            by spaces or commas); any one may match.
        tolerance: how many seconds the timestamp may differ from *now*, either way.
        now: the current time in seconds (defaults to :func:`time.time`).

    Returns:
        The verified event.

    Raises:
        WebhookVerificationError: a subclass naming what is wrong; nothing else escapes.

    Example:
        >>> from replicate_audio.testing import sign_webhook
        >>> body = b'{"id": "p1", "status": "succeeded", "output": "https://x/a.mp3"}'
        >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        >>> event = verify_webhook(sign_webhook(body, secret), body, secret)
        >>> event.prediction.status
        'succeeded'
    """
    webhook_id, timestamp = verify_signature(headers, body, secrets, tolerance=tolerance, now=now)
    try:
        data = _DECODER.decode(bytes(body).decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidPayloadError("the body is not valid JSON") from None
    return WebhookEvent(webhook_id, timestamp, Prediction.from_dict(data))
