"""Verify Replicate's signed webhooks (Standard Webhooks) and parse the prediction they carry."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import attrs

from .errors import (
    FutureTimestampError,
    InvalidPayloadError,
    InvalidSecretError,
    MalformedHeaderError,
    MissingHeaderError,
    SignatureMismatchError,
    StaleTimestampError,
    TimestampError,
)

__all__ = [
    "PREDICTION_STATUSES",
    "Prediction",
    "PredictionStatus",
    "WebhookEvent",
    "parse_secrets",
    "is_prediction_id",
    "verify_signature",
    "verify_webhook",
]

PredictionStatus = Literal["starting", "processing", "succeeded", "failed", "canceled"]
PREDICTION_STATUSES: frozenset[str] = frozenset(
    {"starting", "processing", "succeeded", "failed", "canceled"}
)
TERMINAL_PREDICTION_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,256}")
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret


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
    status: PredictionStatus
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
            InvalidPayloadError: *data* is not an object with a string ``id`` and a known
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
        if status not in PREDICTION_STATUSES:
            raise InvalidPayloadError(
                f"the prediction status {status!r} is not one of {sorted(PREDICTION_STATUSES)}"
            )
        return cls(
            id=prediction_id,
            status=cast("PredictionStatus", status),
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
        """True once the prediction succeeded, failed or was canceled."""
        return self.status in TERMINAL_PREDICTION_STATUSES

    @property
    def output_urls(self) -> tuple[str, ...]:
        """The output as URLs: a single URL string, or the strings of a list."""
        if isinstance(self.output, str):
            return (self.output,)
        if isinstance(self.output, list):
            return tuple(item for item in self.output if isinstance(item, str))
        return ()


@attrs.frozen
class WebhookEvent:
    """One verified delivery: its ``webhook-id``, its timestamp and the prediction it carries."""

    webhook_id: str
    timestamp: int
    prediction: Prediction


def parse_secrets(secrets: str | Sequence[str]) -> tuple[bytes, ...]:
    """Decode signing secrets (``whsec_<base64>``; several separated by spaces or commas).

    Raises:
        InvalidSecretError: no secret was given, or one is not base64.

    Example:
        >>> keys = parse_secrets("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_AAAA")
        >>> tuple(len(key) for key in keys)
        (24, 3)
    """
    if isinstance(secrets, str):
        entries = re.split(r"[\s,]+", secrets)
    elif isinstance(secrets, Sequence):
        entries = list(secrets)
    else:
        raise InvalidSecretError(
            f"secrets must be a string or a sequence, not {type(secrets).__name__}"
        )
    keys = []
    for entry in entries:
        if not isinstance(entry, str):
            raise InvalidSecretError(f"a secret must be a string, not {type(entry).__name__}")
        if not entry:
            continue
        encoded = entry.removeprefix(_SECRET_PREFIX)
        if not _BASE64.fullmatch(encoded):
            # Never echo any part of a secret: this message may reach a webhook's caller.
            raise InvalidSecretError(f"a configured secret is not {_SECRET_PREFIX}<base64>")
        try:
            keys.append(base64.b64decode(encoded, validate=True))
        except binascii.Error:
            raise InvalidSecretError("a secret's base64 has the wrong length or padding") from None
    if not keys:
        raise InvalidSecretError("no webhook signing secret is configured")
    return tuple(keys)


def _header(headers: Mapping[str, str], name: str) -> str:
    try:
        items = list(headers.items())
    except (AttributeError, TypeError):
        raise MalformedHeaderError(name, "headers must be a mapping") from None
    values = [value for key, value in items if isinstance(key, str) and key.lower() == name]
    if len(values) > 1:
        raise MalformedHeaderError(name, "appears more than once")
    if not values or (isinstance(values[0], str) and not values[0].strip()):
        raise MissingHeaderError(name)
    if not isinstance(values[0], str):
        raise MalformedHeaderError(name, "the value is not text")
    return values[0].strip()


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
    webhook_id = _header(headers, "webhook-id")
    if not _PRINTABLE_ID.fullmatch(webhook_id):
        raise MalformedHeaderError("webhook-id", "must be 1-256 printable ASCII characters")
    raw_timestamp = _header(headers, "webhook-timestamp")
    if not _TIMESTAMP.fullmatch(raw_timestamp):
        raise MalformedHeaderError("webhook-timestamp", "must be whole seconds since the epoch")
    signature_header = _header(headers, "webhook-signature")
    if not isinstance(body, bytes | bytearray | memoryview):
        raise InvalidPayloadError(f"the body must be bytes, not {type(body).__name__}")
    keys = parse_secrets(secrets)

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
        data = json.loads(bytes(body), parse_constant=_refuse_constant)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InvalidPayloadError("the body is not valid JSON") from None
    return WebhookEvent(webhook_id, timestamp, Prediction.from_dict(data))
