"""Settings read from the environment, and the parameters of one audio generation."""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import attrs

from .errors import ConfigurationError, InvalidSecretError

__all__ = [
    "JOB_ROUTE",
    "UNSENT_CREATE_POLICIES",
    "WEBHOOK_ROUTE",
    "AllowedOrigin",
    "ReplicateAudioConfig",
    "Settings",
    "parse_secrets",
]

#: The webhook route under the prefix; both adapters mount it and ``webhook_url`` builds it.
WEBHOOK_ROUTE = "/replicate-webhook/{content_type}/{content_id}"
#: The job route under the prefix.
JOB_ROUTE = "/replicate-audio/jobs/{job_id}"
#: What the sweep does with a job whose create Replicate never received (see Settings).
UNSENT_CREATE_POLICIES = ("create", "fail")
#: How predictions report back: by webhook, or followed by polling.
MODES = ("webhooks", "polling")

_MIB = 1024 * 1024
_EVENTS = frozenset({"start", "output", "logs", "completed"})
_VERSION_ID = re.compile(r"[0-9a-f]{64}")
_OWNER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*"
_MODEL_REF = re.compile(_OWNER_NAME)
_VERSION_REF = re.compile(rf"{_OWNER_NAME}:[0-9a-f]{{64}}")
# "" or "/seg/seg": what can sit between BASE_URL and /replicate-webhook/ unescaped.
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+)*")


_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")
_SECRET_PREFIX = "whsec_"  # noqa: S105 - the format marker, not a secret


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


def is_local_host(host: str) -> bool:
    """Tell whether *host* names this machine (localhost or a loopback address).

    Example:
        >>> is_local_host("127.0.0.1"), is_local_host("example.com")
        (True, False)
    """
    host = host.strip("[]").lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@attrs.frozen
class AllowedOrigin:
    """One entry of the output-host allow-list.

    A bare host (``replicate.delivery``) allows https on that host and its subdomains;
    a full origin (``http://127.0.0.1:8787``) allows exactly that scheme, host and port.
    """

    host: str
    scheme: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, entry: str) -> AllowedOrigin:
        """Parse one allow-list entry.

        Example:
            >>> AllowedOrigin.parse("http://127.0.0.1:8787").port
            8787
        """
        entry = entry.strip()
        if "://" not in entry:
            if not re.fullmatch(r"[A-Za-z0-9.-]+", entry) or entry.startswith("."):
                raise ConfigurationError(
                    "REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS", f"{entry!r} is not a host name"
                )
            return cls(host=entry.lower())
        try:
            parts = urlsplit(entry)
            port = parts.port
        except ValueError:
            raise ConfigurationError(
                "REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS",
                f"{entry!r} is not an origin like https://host[:port]",
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigurationError(
                "REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS",
                f"{entry!r} is not an origin like https://host[:port]",
            )
        default = 443 if parts.scheme == "https" else 80
        return cls(host=parts.hostname.lower(), scheme=parts.scheme, port=port or default)

    def allows(self, scheme: str, host: str, port: int | None) -> bool:
        """Tell whether a URL with this scheme, host and port falls under this entry."""
        host = host.lower().rstrip(".")
        if self.scheme is None:
            on_host = host == self.host or host.endswith("." + self.host)
            return scheme == "https" and port in (None, 443) and on_host
        default = 443 if scheme == "https" else 80
        return scheme == self.scheme and host == self.host and (port or default) == self.port


def _split_list(value: str) -> tuple[str, ...]:
    return tuple(part for part in re.split(r"[\s,]+", value) if part)


def _positive_int(variable: str, value: str) -> int:
    if not re.fullmatch(r"[0-9]{1,18}", value.strip()) or int(value) <= 0:
        raise ConfigurationError(variable, f"must be a positive whole number, not {value!r}")
    return int(value)


def _positive_float(variable: str, value: str, *, zero: bool = False) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and (number > 0 or (zero and number == 0))):
        least = "0 or more" if zero else "a positive number of"
        raise ConfigurationError(variable, f"must be {least} seconds, not {value!r}")
    return number


def _flag(variable: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigurationError(variable, f"must be true or false, not {value!r}")


def _check_http_url(variable: str, value: str) -> None:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ConfigurationError(variable, f"must be an http(s) URL, not {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(variable, f"must be an http(s) URL, not {value!r}")
    if parts.query or parts.fragment:
        raise ConfigurationError(variable, f"must not have a query or fragment: {value!r}")


#: Seconds a worker may hold a job in ``processing`` unrenewed before another may take it over.
DEFAULT_LEASE = 30.0


@attrs.frozen(kw_only=True)
class Settings:
    """Everything replicate-audio reads from the environment, validated once at start-up.

    Build it with :meth:`from_env`, or directly in code and tests.

    Example:
        >>> Settings(base_url="https://app.example.com").webhook_url("sound_effect", "7", "j1")
        'https://app.example.com/api/replicate-webhook/sound_effect/7?job=j1'
    """

    base_url: str = "http://localhost:8000"
    api_token: str | None = attrs.field(default=None, repr=False)
    api_base_url: str = "https://api.replicate.com"
    webhook_secrets: tuple[str, ...] = attrs.field(default=(), repr=False, converter=tuple)
    webhook_tolerance: int = 300
    webhook_prefix: str = "/api"
    allowed_output_hosts: tuple[AllowedOrigin, ...] = (AllowedOrigin("replicate.delivery"),)
    allow_private_output_hosts: bool = False
    max_audio_bytes: int = 256 * _MIB
    max_webhook_bytes: int = 10 * _MIB
    database: str = "replicate-audio.sqlite3"
    allow_insecure_base_url: bool = False
    #: Seconds a delivery may take to be recorded before it is answered 503 (so the sender
    #: retries); well under the time Replicate waits for an answer.
    intake_timeout: float = 3.0
    #: Seconds a job may wait for its create to answer before the sweep resolves it.
    create_timeout: float = 60.0
    #: What the sweep does with a job whose create Replicate never received: ``create`` it
    #: (once), or mark it ``fail``-ed with the reason.
    unsent_creates: str = "create"
    #: Seconds a worker's claim on a job lasts unrenewed; the worker renews it every third of
    #: that while it works, so a job whose worker died is taken over after at most this
    #: long plus one sweep interval.
    lease: float = DEFAULT_LEASE
    #: Seconds between sweeps (unfinished jobs, lost webhooks, waiting creates); 0: none.
    sweep_interval: float = 15.0
    #: Seconds without news after which the sweep asks Replicate about a job's prediction.
    reconcile_after: float = 120.0
    #: ``webhooks`` (Replicate reports back), or ``polling``: predictions are created with
    #: no webhook and one poller per app follows them (where webhooks cannot arrive).
    mode: str = "webhooks"
    #: Polling mode: the shortest pause between passes, in seconds.
    poll_interval: float = 1.0
    #: Polling mode: requests per minute the poller may send to Replicate (which allows an
    #: account 3,000 reads a minute; the rest is left to the app and the reconciler).
    poll_reads_per_minute: int = 1000

    def __attrs_post_init__(self) -> None:
        _check_http_url("BASE_URL", self.base_url)
        _check_http_url("REPLICATE_API_BASE_URL", self.api_base_url)
        host = urlsplit(self.base_url).hostname or ""
        if self.mode not in MODES:
            raise ConfigurationError(
                "REPLICATE_AUDIO_MODE", f"must be one of {list(MODES)}, not {self.mode!r}"
            )
        if (
            self.mode == "webhooks"
            and urlsplit(self.base_url).scheme != "https"
            and not is_local_host(host)
            and not self.allow_insecure_base_url
        ):
            raise ConfigurationError(
                "BASE_URL",
                f"{self.base_url!r} is not https; Replicate only delivers webhooks over https "
                "(set REPLICATE_AUDIO_ALLOW_INSECURE_BASE_URL=1 to allow it anyway)",
            )
        if not _PREFIX.fullmatch(self.webhook_prefix):
            raise ConfigurationError(
                "REPLICATE_AUDIO_WEBHOOK_PREFIX",
                "must be '/'-led segments of URL-safe characters (A-Z a-z 0-9 . _ ~ -) "
                f"with no '/' at the end, like '/api/hooks'; not {self.webhook_prefix!r}",
            )
        if self.webhook_secrets:
            try:
                parse_secrets(self.webhook_secrets)
            except InvalidSecretError as error:
                raise ConfigurationError("REPLICATE_WEBHOOK_SECRET", str(error)) from None
        for name, number in (
            ("REPLICATE_AUDIO_POLL_READS_PER_MINUTE", self.poll_reads_per_minute),
            ("REPLICATE_AUDIO_WEBHOOK_TOLERANCE", self.webhook_tolerance),
            ("REPLICATE_AUDIO_MAX_AUDIO_BYTES", self.max_audio_bytes),
            ("REPLICATE_AUDIO_MAX_WEBHOOK_BYTES", self.max_webhook_bytes),
        ):
            if number <= 0:
                raise ConfigurationError(name, f"must be positive, not {number}")
        for name, seconds in (
            ("REPLICATE_AUDIO_INTAKE_TIMEOUT", self.intake_timeout),
            ("REPLICATE_AUDIO_CREATE_TIMEOUT", self.create_timeout),
            ("REPLICATE_AUDIO_LEASE", self.lease),
            ("REPLICATE_AUDIO_RECONCILE_AFTER", self.reconcile_after),
            ("REPLICATE_AUDIO_POLL_INTERVAL", self.poll_interval),
        ):
            if not (math.isfinite(seconds) and seconds > 0):
                raise ConfigurationError(name, f"must be a positive number, not {seconds}")
        if not (math.isfinite(self.sweep_interval) and self.sweep_interval >= 0):
            raise ConfigurationError(
                "REPLICATE_AUDIO_SWEEP_INTERVAL", f"must be 0 or more, not {self.sweep_interval}"
            )
        if self.unsent_creates not in UNSENT_CREATE_POLICIES:
            raise ConfigurationError(
                "REPLICATE_AUDIO_UNSENT_CREATES",
                f"must be one of {list(UNSENT_CREATE_POLICIES)}, not {self.unsent_creates!r}",
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from the environment (or from *environ*).

        Raises:
            ConfigurationError: a variable is malformed; the message names it.

        Example:
            >>> Settings.from_env({"BASE_URL": "https://app.example.com"}).base_url
            'https://app.example.com'
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        if "BASE_URL" in env:
            values["base_url"] = env["BASE_URL"].rstrip("/")
        if env.get("REPLICATE_API_TOKEN"):
            values["api_token"] = env["REPLICATE_API_TOKEN"]
        if "REPLICATE_API_BASE_URL" in env:
            values["api_base_url"] = env["REPLICATE_API_BASE_URL"].rstrip("/")
        if "REPLICATE_WEBHOOK_SECRET" in env:
            values["webhook_secrets"] = _split_list(env["REPLICATE_WEBHOOK_SECRET"])
        for variable, field in (
            ("REPLICATE_AUDIO_WEBHOOK_TOLERANCE", "webhook_tolerance"),
            ("REPLICATE_AUDIO_MAX_AUDIO_BYTES", "max_audio_bytes"),
            ("REPLICATE_AUDIO_MAX_WEBHOOK_BYTES", "max_webhook_bytes"),
            ("REPLICATE_AUDIO_POLL_READS_PER_MINUTE", "poll_reads_per_minute"),
        ):
            if variable in env:
                values[field] = _positive_int(variable, env[variable])
        if "REPLICATE_AUDIO_WEBHOOK_PREFIX" in env:
            values["webhook_prefix"] = env["REPLICATE_AUDIO_WEBHOOK_PREFIX"].rstrip("/")
        if "REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS" in env:
            entries = _split_list(env["REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS"])
            values["allowed_output_hosts"] = tuple(AllowedOrigin.parse(e) for e in entries)
        for variable, field in (
            ("REPLICATE_AUDIO_ALLOW_PRIVATE_OUTPUT_HOSTS", "allow_private_output_hosts"),
            ("REPLICATE_AUDIO_ALLOW_INSECURE_BASE_URL", "allow_insecure_base_url"),
        ):
            if variable in env:
                values[field] = _flag(variable, env[variable])
        if env.get("REPLICATE_AUDIO_DATABASE"):
            values["database"] = env["REPLICATE_AUDIO_DATABASE"]
        for variable, field in (
            ("REPLICATE_AUDIO_INTAKE_TIMEOUT", "intake_timeout"),
            ("REPLICATE_AUDIO_CREATE_TIMEOUT", "create_timeout"),
            ("REPLICATE_AUDIO_LEASE", "lease"),
            ("REPLICATE_AUDIO_RECONCILE_AFTER", "reconcile_after"),
            ("REPLICATE_AUDIO_POLL_INTERVAL", "poll_interval"),
        ):
            if variable in env:
                values[field] = _positive_float(variable, env[variable])
        if "REPLICATE_AUDIO_MODE" in env:
            values["mode"] = env["REPLICATE_AUDIO_MODE"].strip().lower()
        if "REPLICATE_AUDIO_SWEEP_INTERVAL" in env:
            variable = "REPLICATE_AUDIO_SWEEP_INTERVAL"
            values["sweep_interval"] = _positive_float(variable, env[variable], zero=True)
        if "REPLICATE_AUDIO_UNSENT_CREATES" in env:
            values["unsent_creates"] = env["REPLICATE_AUDIO_UNSENT_CREATES"].strip().lower()
        return cls(**values)

    def webhook_url(self, content_type: str, content_id: str, job_id: str | None = None) -> str:
        """The URL Replicate calls: ``{BASE_URL}{prefix}/replicate-webhook/{type}/{id}``,
        with ``?job={job_id}`` so that a delivery finds its job even before the create
        has answered."""
        path = WEBHOOK_ROUTE.format(content_type=content_type, content_id=content_id)
        url = f"{self.base_url.rstrip('/')}{self.webhook_prefix}{path}"
        return url if job_id is None else f"{url}?job={job_id}"


def _frozen_input(value: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError("input", f"must be a mapping, not {type(value).__name__}")
    try:
        # A JSON round-trip both checks that Replicate can receive it and copies it.
        copied: dict[str, Any] = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as error:
        raise ConfigurationError("input", f"must be JSON-serialisable: {error}") from None
    return copied


def _seconds_or_none(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigurationError("deadline", f"must be seconds or a timedelta, not {value!r}")
    return float(value)


def _events(value: Any) -> tuple[str, ...]:
    events = (value,) if isinstance(value, str) else tuple(value)
    unknown = sorted(set(events) - _EVENTS)
    if unknown or not events:
        raise ConfigurationError(
            "webhook_events_filter",
            f"must be a non-empty subset of {sorted(_EVENTS)}, not {list(events)}",
        )
    return events


@attrs.frozen(kw_only=True)
class ReplicateAudioConfig:
    """What to ask Replicate for: a model or version, its input, and the target duration.

    Example:
        >>> config = ReplicateAudioConfig(
        ...     model="stability-ai/stable-audio-2.5",
        ...     input={"prompt": "a door creaks open", "duration": 4},
        ...     duration=3.0,
        ... )
        >>> config.webhook_events_filter
        ('start', 'completed')
    """

    version: str | None = None
    model: str | None = None
    input: dict[str, Any] = attrs.field(factory=dict, converter=_frozen_input, hash=False)
    duration: float | None = None
    webhook_events_filter: tuple[str, ...] = attrs.field(
        default=("start", "completed"), converter=_events
    )
    #: Create through ``POST /v1/deployments/{owner}/{name}/predictions``.
    deployment: str | None = None
    #: Seconds (or a ``timedelta``) after which Replicate ends the prediction: ``aborted``
    #: if it had not started, ``canceled`` if it was running (the ``Cancel-After`` header).
    deadline: float | None = attrs.field(default=None, converter=_seconds_or_none)
    #: Which output file is the audio, for models with several: a dict key or a list index.
    output: str | int | None = None

    def __attrs_post_init__(self) -> None:
        targets = [self.version, self.model, self.deployment]
        if sum(target is not None for target in targets) != 1:
            raise ConfigurationError(
                "version/model/deployment", "give exactly one of version, model or deployment"
            )
        if self.version is not None and not (
            _VERSION_ID.fullmatch(self.version)
            or _VERSION_REF.fullmatch(self.version)
            or _MODEL_REF.fullmatch(self.version)
        ):
            raise ConfigurationError(
                "version",
                "must be a 64-character version id, owner/name:version, or owner/name of an "
                f"official model, not {self.version!r}",
            )
        for name, reference in (("model", self.model), ("deployment", self.deployment)):
            if reference is not None and not _MODEL_REF.fullmatch(reference):
                raise ConfigurationError(name, f"must be owner/name, not {reference!r}")
        if self.duration is not None and not (0 < self.duration < 24 * 3600):
            raise ConfigurationError("duration", f"must be a positive number, not {self.duration}")
        if self.deadline is not None and not (1 <= self.deadline <= 24 * 3600):
            raise ConfigurationError("deadline", f"must be 1 s to 24 h, not {self.deadline!r} s")
        if self.output is not None and (
            isinstance(self.output, bool) or not isinstance(self.output, str | int)
        ):
            raise ConfigurationError("output", f"must be a key or an index, not {self.output!r}")

    @property
    def target(self) -> dict[str, str]:
        """What the create names: ``{"model": ...}`` (an official model, also for
        ``version="owner/name"``), ``{"version": ...}`` or ``{"deployment": ...}``.

        Example:
            >>> ReplicateAudioConfig(version="meta/musicgen").target
            {'model': 'meta/musicgen'}
        """
        if self.deployment is not None:
            return {"deployment": self.deployment}
        if self.model is not None:
            return {"model": self.model}
        assert self.version is not None
        if _MODEL_REF.fullmatch(self.version):
            return {"model": self.version}
        return {"version": self.version}

    @property
    def cancel_after(self) -> str | None:
        """The ``Cancel-After`` header for :attr:`deadline`, in whole seconds.

        Example:
            >>> ReplicateAudioConfig(model="a/b", deadline=90).cancel_after
            '90s'
        """
        return None if self.deadline is None else f"{math.ceil(self.deadline)}s"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form, kept with the job so that it can be run again."""
        return attrs.asdict(self, recurse=False) | {
            "webhook_events_filter": list(self.webhook_events_filter)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReplicateAudioConfig:
        """The inverse of :meth:`to_dict`."""
        return cls(
            **{field.name: data[field.name] for field in attrs.fields(cls) if field.name in data}
        )
