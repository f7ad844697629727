"""Webhook verification: the official vector, every refusal, and property tests."""

from __future__ import annotations

import base64
import contextlib
import json
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import replicate
import standardwebhooks
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from replicate.webhook import InvalidSignatureError, WebhookSigningSecret

from replicate_audio import (
    FutureTimestampError,
    InvalidPayloadError,
    InvalidSecretError,
    MalformedHeaderError,
    MissingHeaderError,
    SignatureMismatchError,
    StaleTimestampError,
    WebhookVerificationError,
    verify_signature,
    verify_webhook,
)
from replicate_audio.jobs import PREDICTION_STATUSES, TERMINAL_PREDICTION_STATUSES
from replicate_audio.testing import generate_secret, sign_webhook
from replicate_audio.webhooks import parse_secrets as parse_secrets_from_webhooks

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TS = 1614265330
VECTOR_BODY = b'{"test": 2432232314}'
VECTOR_SIG = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NOW = 1_700_000_000

PREDICTION = {
    "id": "ufawqhfynnddngldkgtslldrkq",
    "status": "succeeded",
    "output": "https://replicate.delivery/pbxt/abc/output.mp3",
    "error": None,
    "logs": "done",
    "metrics": {"predict_time": 4.2},
    "urls": {"get": "https://api.replicate.com/v1/predictions/ufawqhfynnddngldkgtslldrkq"},
    "created_at": "2026-11-24T10:00:00Z",
    "a_field_replicate_adds_later": [1, 2],
}


def vector_headers(**overrides: str) -> dict[str, str]:
    headers = {
        "webhook-id": VECTOR_ID,
        "webhook-timestamp": str(VECTOR_TS),
        "webhook-signature": VECTOR_SIG,
    }
    headers.update(overrides)
    return headers


def signed(body: bytes, *, secret: str = SECRET, now: int = NOW) -> dict[str, str]:
    return sign_webhook(body, secret, webhook_id="msg_test", timestamp=now)


def test_official_vector_verifies() -> None:
    """The Standard Webhooks reference vector passes signature verification."""
    assert verify_signature(vector_headers(), VECTOR_BODY, SECRET, now=VECTOR_TS) == (
        VECTOR_ID,
        VECTOR_TS,
    )


def test_sign_webhook_reproduces_official_vector() -> None:
    """sign_webhook produces exactly the reference signature."""
    headers = sign_webhook(VECTOR_BODY, SECRET, webhook_id=VECTOR_ID, timestamp=VECTOR_TS)
    assert headers == vector_headers()


def test_official_vector_is_not_a_prediction() -> None:
    """A correctly signed body that is not a prediction is refused as a bad payload (400)."""
    with pytest.raises(InvalidPayloadError) as caught:
        verify_webhook(vector_headers(), VECTOR_BODY, SECRET, now=VECTOR_TS)
    assert caught.value.status_code == 400


def test_verify_webhook_parses_prediction() -> None:
    """A signed prediction is parsed, unknown fields kept in raw."""
    body = json.dumps(PREDICTION).encode()
    event = verify_webhook(signed(body), body, SECRET, now=NOW)
    assert event.webhook_id == "msg_test"
    assert event.timestamp == NOW
    assert event.prediction.id == PREDICTION["id"]
    assert event.prediction.status == "succeeded"
    assert event.prediction.output_urls == (PREDICTION["output"],)
    assert event.prediction.metrics == {"predict_time": 4.2}
    assert event.prediction.raw["a_field_replicate_adds_later"] == [1, 2]
    assert event.prediction.is_terminal


@pytest.mark.parametrize(
    ("output", "urls"),
    [
        (None, ()),
        ("https://a/1.wav", ("https://a/1.wav",)),
        (["https://a/1.wav", "https://a/2.wav"], ("https://a/1.wav", "https://a/2.wav")),
        ({"audio": "https://a/1.wav"}, ("https://a/1.wav",)),
    ],
)
def test_output_forms(output: Any, urls: tuple[str, ...]) -> None:
    """Output may be null, a URL string or a list of URLs."""
    body = json.dumps({**PREDICTION, "output": output}).encode()
    assert verify_webhook(signed(body), body, SECRET, now=NOW).prediction.output_urls == urls


def test_header_names_are_case_insensitive() -> None:
    """Header names match in any case, as HTTP requires."""
    headers = {k.upper(): v for k, v in vector_headers().items()}
    assert verify_signature(headers, VECTOR_BODY, SECRET, now=VECTOR_TS)[0] == VECTOR_ID


def test_any_of_several_signatures_may_match() -> None:
    """A header carrying several v1 entries passes when any one matches."""
    headers = vector_headers(**{"webhook-signature": f"v1,Zm9vYmFy v1a,c29tZXRoaW5n {VECTOR_SIG}"})
    assert verify_signature(headers, VECTOR_BODY, SECRET, now=VECTOR_TS)


@pytest.mark.parametrize("secrets", [[generate_secret(), SECRET], f"{generate_secret()}, {SECRET}"])
def test_any_of_several_secrets_may_match(secrets: Any) -> None:
    """During rotation any configured secret may match (list, or comma/space separated)."""
    assert verify_signature(vector_headers(), VECTOR_BODY, secrets, now=VECTOR_TS)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header(missing: str) -> None:
    """Each absent header is named in the error."""
    headers = vector_headers()
    del headers[missing]
    with pytest.raises(MissingHeaderError, match=missing):
        verify_signature(headers, VECTOR_BODY, SECRET, now=VECTOR_TS)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("webhook-timestamp", "12abc"),
        ("webhook-timestamp", "\uff11\uff12\uff13"),
        ("webhook-timestamp", "-5"),
        ("webhook-signature", "v1"),
        ("webhook-signature", "g0hM9SsE"),
        ("webhook-signature", "v1a,c29tZQ=="),
        ("webhook-id", "msg with space"),
        ("webhook-id", "msg\u00e9"),
    ],
)
def test_malformed_header(header: str, value: str) -> None:
    """Malformed timestamps, signature entries and ids are refused by name."""
    with pytest.raises(MalformedHeaderError, match=header):
        verify_signature(vector_headers(**{header: value}), VECTOR_BODY, SECRET, now=VECTOR_TS)


@pytest.mark.parametrize(
    "secret", ["whsec_not base64!", "whsec_abc", "", "whsec_ü", None, 42, [b"whsec_AAAA"]]
)
def test_bad_secret_format(secret: str) -> None:
    """A secret that is not whsec_<base64> is a configuration error, not a crash."""
    with pytest.raises(InvalidSecretError):
        verify_signature(vector_headers(), VECTOR_BODY, secret, now=VECTOR_TS)


def test_stale_timestamp() -> None:
    """A delivery older than the tolerance is refused."""
    with pytest.raises(StaleTimestampError, match="old"):
        verify_signature(vector_headers(), VECTOR_BODY, SECRET, now=VECTOR_TS + 301)


def test_future_timestamp() -> None:
    """A delivery from further in the future than the tolerance is refused."""
    with pytest.raises(FutureTimestampError, match="future"):
        verify_signature(vector_headers(), VECTOR_BODY, SECRET, now=VECTOR_TS - 301)


def test_tolerance_edges_are_inclusive() -> None:
    """Exactly `tolerance` seconds either way still passes."""
    for now in (VECTOR_TS - 300, VECTOR_TS + 300):
        assert verify_signature(vector_headers(), VECTOR_BODY, SECRET, now=now)


def test_year_old_message_refused_by_default() -> None:
    """Unlike replicate's own validator, a year-old delivery never passes by default."""
    with pytest.raises(StaleTimestampError):
        verify_signature(vector_headers(), VECTOR_BODY, SECRET)


def test_wrong_secret() -> None:
    """A signature made with another secret does not match."""
    with pytest.raises(SignatureMismatchError):
        verify_signature(vector_headers(), VECTOR_BODY, generate_secret(), now=VECTOR_TS)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        b'{"id": 5, "status": "succeeded"}',
        b"{}",
        b'{"id": "x", "status": 5}',
        b'{"id": "x", "status": null}',
        b'{"id": "x"}',
        b'{"id": "x", "status": ""}',
        b'{"id": "x", "status": "Succeeded"}',
        b'{"id": "x", "status": "not a status"}',
        b'{"id": "x", "status": "' + b"x" * 33 + b'"}',
        b"[" * 100_000,
    ],
)
def test_signed_non_predictions_are_bad_payloads(body: bytes) -> None:
    """Signed bodies that are not JSON predictions (a status that is not a string, or not
    1-32 of a-z and _) raise InvalidPayloadError only."""
    with pytest.raises(InvalidPayloadError):
        verify_webhook(signed(body), body, SECRET, now=NOW)


@pytest.mark.parametrize("status", ["exploded", "paused_for_review", "x" * 32])
def test_a_status_replicate_adds_later_is_a_prediction(status: str) -> None:
    """A well-formed status this version does not know still parses, as neither known nor
    terminal, so the delivery can be recorded and answered 200."""
    body = json.dumps({**PREDICTION, "status": status}).encode()
    prediction = verify_webhook(signed(body), body, SECRET, now=NOW).prediction
    assert prediction.status == status
    assert (prediction.is_known, prediction.is_terminal) == (False, False)


@pytest.mark.parametrize("status", sorted(PREDICTION_STATUSES))
def test_every_documented_status_is_known(status: str) -> None:
    """Each status Replicate documents parses as known; the four final ones as terminal."""
    body = json.dumps({**PREDICTION, "status": status}).encode()
    prediction = verify_webhook(signed(body), body, SECRET, now=NOW).prediction
    assert prediction.is_known
    assert prediction.is_terminal is (status in TERMINAL_PREDICTION_STATUSES)


def test_headers_that_are_not_a_mapping() -> None:
    """Headers of the wrong type are refused, not crashed on."""
    with pytest.raises(WebhookVerificationError):
        verify_webhook(None, b"{}", SECRET)  # type: ignore[arg-type]


# --- property tests -------------------------------------------------------------------

predictions = st.fixed_dictionaries(
    {
        "id": st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=30),
        "status": st.one_of(
            st.sampled_from(sorted(PREDICTION_STATUSES)),
            st.from_regex(r"[a-z_]{1,32}", fullmatch=True),
        ),
        "output": st.one_of(st.none(), st.text(), st.lists(st.text(), max_size=3)),
        "logs": st.one_of(st.none(), st.text()),
    }
)
secrets = st.binary(min_size=1, max_size=64).map(
    lambda key: "whsec_" + base64.b64encode(key).decode()
)
webhook_ids = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)
timestamps = st.integers(min_value=0, max_value=10**12)


@given(prediction=predictions, secret=secrets, webhook_id=webhook_ids, ts=timestamps)
def test_round_trip(prediction: dict[str, Any], secret: str, webhook_id: str, ts: int) -> None:
    """Whatever is signed with sign_webhook verifies, and parses back to the same prediction."""
    body = json.dumps(prediction).encode()
    headers = sign_webhook(body, secret, webhook_id=webhook_id, timestamp=ts)
    event = verify_webhook(headers, body, secret, now=ts)
    assert (event.webhook_id, event.timestamp) == (webhook_id, ts)
    assert event.prediction.raw == prediction


def flip(data: bytes, index: int, bit: int) -> bytes:
    index %= len(data)
    return data[:index] + bytes([data[index] ^ (1 << bit)]) + data[index + 1 :]


@given(
    prediction=predictions,
    part=st.sampled_from(["body", "webhook-id", "webhook-timestamp", "webhook-signature"]),
    index=st.integers(min_value=0),
    bit=st.integers(min_value=0, max_value=7),
)
def test_any_single_change_is_rejected(
    prediction: dict[str, Any], part: str, index: int, bit: int
) -> None:
    """Changing any one byte of body, id, timestamp or signature makes verification fail."""
    body = json.dumps(prediction).encode()
    headers = sign_webhook(body, SECRET, webhook_id="msg_abc123", timestamp=NOW)
    if part == "body":
        body = flip(body, index, bit)
    else:
        value = headers[part].encode()
        start = 3 if part == "webhook-signature" else 0  # keep "v1," so the entry stays v1
        changed = flip(value[start:], index, bit)
        headers[part] = (value[:start] + changed).decode("latin-1")
    with pytest.raises(WebhookVerificationError):
        verify_webhook(headers, body, SECRET, now=NOW, tolerance=10**13)


header_values = st.one_of(
    st.text(max_size=80), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    headers=st.dictionaries(
        st.sampled_from(["webhook-id", "Webhook-Timestamp", "webhook-signature", "x", ""]),
        header_values,
    ),
    body=st.binary(max_size=200),
    secret=st.one_of(secrets, st.text(max_size=40)),
    now=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_arbitrary_input_raises_only_verification_errors(
    headers: dict[str, str], body: bytes, secret: str, now: float | None
) -> None:
    """For any headers, body and secret, only WebhookVerificationError ever escapes."""
    with contextlib.suppress(WebhookVerificationError):
        verify_webhook(headers, body, secret, now=now)


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)),
    secret=secrets,
    timestamp=st.integers(min_value=0, max_value=10**15 - 1),
    now=st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
    tolerance=st.one_of(st.integers(-10, 10**6), st.floats(allow_nan=True, allow_infinity=True)),
)
def test_signed_arbitrary_input_raises_only_verification_errors(
    body: bytes, secret: str, timestamp: int, now: float | None, tolerance: float
) -> None:
    """Correctly signed, any body, timestamp and clock (NaN and infinities included) either
    verifies or raises WebhookVerificationError; a clock that is not finite never verifies."""
    headers = sign_webhook(body, secret, timestamp=timestamp)
    try:
        event = verify_webhook(headers, body, secret, now=now, tolerance=tolerance)  # type: ignore[arg-type]
    except WebhookVerificationError:
        return
    assert event.timestamp == timestamp
    assert now is None or abs(now - timestamp) <= tolerance


@given(prediction=predictions, secret=secrets, ts=st.integers(min_value=0, max_value=4 * 10**9))
def test_agrees_with_standardwebhooks(prediction: dict[str, Any], secret: str, ts: int) -> None:
    """The standardwebhooks reference library accepts what we sign, and we accept what it signs."""
    body = json.dumps(prediction).encode()
    reference = standardwebhooks.Webhook(secret)
    signature = reference.sign(
        "msg_ref", datetime.fromtimestamp(ts, tz=timezone.utc), body.decode()
    )
    headers = {
        "webhook-id": "msg_ref",
        "webhook-timestamp": str(ts),
        "webhook-signature": signature,
    }
    assert verify_webhook(headers, body, secret, now=ts).prediction.raw == prediction
    ours = sign_webhook(body, secret, webhook_id="msg_ref", timestamp=ts)
    assert ours["webhook-signature"] == signature


@given(prediction=predictions, secret=secrets)
def test_agrees_with_replicate_validate(prediction: dict[str, Any], secret: str) -> None:
    """replicate.webhooks.validate accepts what sign_webhook produces."""
    body = json.dumps(prediction).encode()
    headers = sign_webhook(body, secret)
    key = WebhookSigningSecret(key=secret)
    request = httpx.Request("POST", "https://app.example.com/hook", headers=headers, content=body)
    replicate.webhooks.validate(request=request, secret=key, tolerance=300)  # raises if invalid
    tampered = httpx.Request("POST", "https://x/hook", headers=headers, content=body + b" ")
    with pytest.raises(InvalidSignatureError):
        replicate.webhooks.validate(request=tampered, secret=key, tolerance=300)
    assert verify_webhook(headers, body, secret).prediction.id == prediction["id"]


def test_repeated_header_is_malformed() -> None:
    """A webhook-* header sent twice is refused, whichever copy is valid."""
    items = [*vector_headers().items(), ("Webhook-Signature", "v1,Zm9vYmFy")]

    class RawHeaders(dict[str, str]):
        def items(self):  # type: ignore[override]
            return items

    with pytest.raises(MalformedHeaderError, match="more than once"):
        verify_signature(RawHeaders(), VECTOR_BODY, SECRET, now=VECTOR_TS)


def test_comma_joined_signatures_are_malformed() -> None:
    """Two signature headers joined with a comma (as WSGI does) are refused, not half-read."""
    joined = vector_headers(**{"webhook-signature": f"v1,Zm9vYmFy, {VECTOR_SIG}"})
    with pytest.raises(MalformedHeaderError, match="webhook-signature"):
        verify_signature(joined, VECTOR_BODY, SECRET, now=VECTOR_TS)


def test_parse_secrets_is_still_importable_from_webhooks() -> None:
    """parse_secrets lives in config now; webhooks re-exports the same function."""
    from replicate_audio.config import parse_secrets

    assert parse_secrets_from_webhooks is parse_secrets
    assert parse_secrets(SECRET) == (base64.b64decode(SECRET.removeprefix("whsec_")),)
