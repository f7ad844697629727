"""What the operator commands share: reading a delivery captured from a log, and checking it
exactly as the webhook route would (``replicate-audio verify``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

from .errors import MalformedHeaderError
from .webhooks import WebhookEvent, verify_webhook

__all__ = ["check_delivery", "parse_headers"]


def parse_headers(text: str) -> dict[str, str]:
    """Headers as a JSON object, or as ``Name: value`` lines copied from a log (a request
    line such as ``POST /api/... HTTP/1.1`` and blank lines are skipped).

    Raises:
        MalformedHeaderError: the text is neither.

    Example:
        >>> parse_headers("POST /hook HTTP/1.1\\nwebhook-id: msg_1\\nWebhook-Timestamp: 9")
        {'webhook-id': 'msg_1', 'Webhook-Timestamp': '9'}
        >>> parse_headers('{"webhook-id": "msg_1"}')
        {'webhook-id': 'msg_1'}
    """
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except ValueError as error:
            raise MalformedHeaderError("headers", f"not a JSON object: {error}") from None
        if not isinstance(data, dict) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in data.items()
        ):
            raise MalformedHeaderError("headers", "the JSON must map names to strings")
        return data
    headers: dict[str, str] = {}
    for line in stripped.splitlines():
        name, colon, value = line.partition(":")
        if not line.strip() or (not colon and " HTTP/" in line):
            continue
        if not colon or not name.strip() or " " in name.strip():
            raise MalformedHeaderError("headers", f"line {line[:40]!r} is not 'Name: value'")
        headers[name.strip()] = value.strip()
    return headers


def check_delivery(
    headers: dict[str, str],
    body: bytes,
    secrets: str | Sequence[str],
    *,
    tolerance: int = 300,
    any_time: bool = False,
) -> WebhookEvent:
    """Verify a captured delivery as the webhook route does; with *any_time*, as of the time
    it was signed (a capture from a log is usually older than the tolerance).

    Raises:
        WebhookVerificationError: a subclass naming what is wrong.
    """
    now = None
    if any_time:
        stamp = next(
            (value for key, value in headers.items() if key.lower() == "webhook-timestamp"), ""
        )
        now = float(stamp) if stamp.strip().isdigit() else None
    return verify_webhook(headers, body, secrets, tolerance=tolerance, now=now)
