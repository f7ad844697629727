"""Settings read from the environment, and the parameters of one audio generation."""

from __future__ import annotations

import ipaddress
import json
import os
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs

from .errors import ConfigurationError, InvalidSecretError
from .webhooks import parse_secrets

__all__ = ["AllowedOrigin", "ReplicateAudioConfig", "Settings"]

_MIB = 1024 * 1024
_EVENTS = frozenset({"start", "output", "logs", "completed"})
_VERSION_ID = re.compile(r"[0-9a-f]{64}")
_OWNER_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*"
_MODEL_REF = re.compile(_OWNER_NAME)
_VERSION_REF = re.compile(rf"{_OWNER_NAME}:[0-9a-f]{{64}}")
# "" or "/seg/seg": what can sit between BASE_URL and /replicate-webhook/ unescaped.
_PREFIX = re.compile(r"(?:/[A-Za-z0-9._~-]+)*")


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


@attrs.frozen(kw_only=True)
class Settings:
    """Everything replicate-audio reads from the environment, validated once at start-up.

    Build it with :meth:`from_env`, or directly in code and tests.

    Example:
        >>> Settings(base_url="https://app.example.com").webhook_url("sound_effect", "7")
        'https://app.example.com/api/replicate-webhook/sound_effect/7'
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

    def __attrs_post_init__(self) -> None:
        _check_http_url("BASE_URL", self.base_url)
        _check_http_url("REPLICATE_API_BASE_URL", self.api_base_url)
        host = urlsplit(self.base_url).hostname or ""
        if (
            urlsplit(self.base_url).scheme != "https"
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
            ("REPLICATE_AUDIO_WEBHOOK_TOLERANCE", self.webhook_tolerance),
            ("REPLICATE_AUDIO_MAX_AUDIO_BYTES", self.max_audio_bytes),
            ("REPLICATE_AUDIO_MAX_WEBHOOK_BYTES", self.max_webhook_bytes),
        ):
            if number <= 0:
                raise ConfigurationError(name, f"must be positive, not {number}")

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
        return cls(**values)

    def webhook_url(self, content_type: str, content_id: str) -> str:
        """The URL Replicate calls: ``{BASE_URL}{prefix}/replicate-webhook/{type}/{id}``."""
        base = self.base_url.rstrip("/")
        return f"{base}{self.webhook_prefix}/replicate-webhook/{content_type}/{content_id}"


def _frozen_input(value: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigurationError("input", f"must be a mapping, not {type(value).__name__}")
    try:
        # A JSON round-trip both checks that Replicate can receive it and copies it.
        copied: dict[str, Any] = json.loads(json.dumps(dict(value)))
    except (TypeError, ValueError) as error:
        raise ConfigurationError("input", f"must be JSON-serialisable: {error}") from None
    return copied


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

    def __attrs_post_init__(self) -> None:
        if (self.version is None) == (self.model is None):
            raise ConfigurationError("version/model", "give exactly one of version or model")
        if self.version is not None and not (
            _VERSION_ID.fullmatch(self.version) or _VERSION_REF.fullmatch(self.version)
        ):
            raise ConfigurationError(
                "version",
                f"must be a 64-character version id or owner/name:version, not {self.version!r}",
            )
        if self.model is not None and not _MODEL_REF.fullmatch(self.model):
            raise ConfigurationError("model", f"must be owner/name, not {self.model!r}")
        if self.duration is not None and not (0 < self.duration < 24 * 3600):
            raise ConfigurationError("duration", f"must be a positive number, not {self.duration}")

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
