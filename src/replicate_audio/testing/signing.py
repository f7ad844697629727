"""Sign webhook deliveries the way Replicate does, for tests of apps that receive them."""

from __future__ import annotations

import base64
import secrets as _random
import time

from ..webhooks import _sign, parse_secrets

__all__ = ["generate_secret", "sign_webhook"]


def generate_secret() -> str:
    """A new random signing secret in Replicate's ``whsec_<base64>`` form.

    Example:
        >>> generate_secret().startswith("whsec_")
        True
    """
    return "whsec_" + base64.b64encode(_random.token_bytes(24)).decode("ascii")


def sign_webhook(
    body: bytes,
    secret: str,
    *,
    webhook_id: str | None = None,
    timestamp: int | None = None,
) -> dict[str, str]:
    """Return the three Standard Webhooks headers Replicate would send with *body*.

    Args:
        body: the exact bytes that will be sent.
        secret: the ``whsec_...`` signing secret.
        webhook_id: the delivery id (a fresh ``msg_...`` id by default).
        timestamp: seconds since the epoch (now by default).

    Example:
        >>> secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        >>> headers = sign_webhook(b'{"test": 2432232314}', secret,
        ...                        webhook_id="msg_p5jXN8AQM9LWM0D4loKWxJek", timestamp=1614265330)
        >>> headers["webhook-signature"]
        'v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE='
    """
    key = parse_secrets(secret)[0]
    webhook_id = webhook_id or f"msg_{_random.token_hex(12)}"
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = _sign(key, webhook_id, stamp, bytes(body)).decode("ascii")
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{signature}",
    }
