"""Settings from the environment: defaults, parsing, and errors that name the variable."""

from __future__ import annotations

import pytest

from replicate_audio import AllowedOrigin, ConfigurationError, Settings


def test_defaults() -> None:
    """An empty environment gives the documented defaults."""
    settings = Settings.from_env({})
    assert settings.base_url == "http://localhost:8000"
    assert settings.api_base_url == "https://api.replicate.com"
    assert settings.webhook_tolerance == 300
    assert settings.webhook_prefix == "/api"
    assert settings.allowed_output_hosts == (AllowedOrigin("replicate.delivery"),)
    assert settings.database == "replicate-audio.sqlite3"
    assert (settings.intake_timeout, settings.create_timeout) == (3.0, 60.0)
    assert settings.unsent_creates == "create"
    assert settings.webhook_url("sound_effect", "5") == (
        "http://localhost:8000/api/replicate-webhook/sound_effect/5"
    )


def test_webhook_url_names_the_job() -> None:
    """With a job id the webhook URL carries it as ?job=, under the base URL and prefix."""
    settings = Settings(base_url="https://app.example.com/", webhook_prefix="/hooks")
    assert settings.webhook_url("background_music", "text-7", "AbC-_9") == (
        "https://app.example.com/hooks/replicate-webhook/background_music/text-7?job=AbC-_9"
    )


def test_every_variable_is_read() -> None:
    """Each documented variable lands in its field."""
    settings = Settings.from_env(
        {
            "BASE_URL": "https://app.example.com/",
            "REPLICATE_API_TOKEN": "r8_x",
            "REPLICATE_API_BASE_URL": "http://127.0.0.1:8787",
            "REPLICATE_WEBHOOK_SECRET": "whsec_AAAA, whsec_BBBB whsec_CCCC",
            "REPLICATE_AUDIO_WEBHOOK_TOLERANCE": "60",
            "REPLICATE_AUDIO_WEBHOOK_PREFIX": "/hooks/",
            "REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS": "replicate.delivery,http://127.0.0.1:8787",
            "REPLICATE_AUDIO_ALLOW_PRIVATE_OUTPUT_HOSTS": "yes",
            "REPLICATE_AUDIO_MAX_AUDIO_BYTES": "1000",
            "REPLICATE_AUDIO_MAX_WEBHOOK_BYTES": "2000",
            "REPLICATE_AUDIO_DATABASE": "postgresql+psycopg://db/app",
            "REPLICATE_AUDIO_INTAKE_TIMEOUT": "1.5",
            "REPLICATE_AUDIO_CREATE_TIMEOUT": "90",
            "REPLICATE_AUDIO_UNSENT_CREATES": " Fail ",
        }
    )
    assert settings.base_url == "https://app.example.com"
    assert settings.api_token == "r8_x"
    assert settings.webhook_secrets == ("whsec_AAAA", "whsec_BBBB", "whsec_CCCC")
    assert settings.webhook_tolerance == 60
    assert settings.webhook_prefix == "/hooks"
    assert settings.allowed_output_hosts[1] == AllowedOrigin("127.0.0.1", "http", 8787)
    assert settings.allow_private_output_hosts is True
    assert (settings.max_audio_bytes, settings.max_webhook_bytes) == (1000, 2000)
    assert settings.database == "postgresql+psycopg://db/app"
    assert (settings.intake_timeout, settings.create_timeout) == (1.5, 90.0)
    assert settings.unsent_creates == "fail"
    assert "r8_x" not in repr(settings)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("REPLICATE_AUDIO_WEBHOOK_TOLERANCE", "five"),
        ("REPLICATE_AUDIO_WEBHOOK_TOLERANCE", "0"),
        ("REPLICATE_AUDIO_MAX_AUDIO_BYTES", "-3"),
        ("REPLICATE_AUDIO_MAX_WEBHOOK_BYTES", "1e6"),
        ("REPLICATE_AUDIO_ALLOW_PRIVATE_OUTPUT_HOSTS", "maybe"),
        ("REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS", "ftp://files.example.com"),
        ("REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS", "bad_host!"),
        ("REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS", "http://127.0.0.1:99999"),
        ("REPLICATE_AUDIO_WEBHOOK_PREFIX", "api"),
        ("REPLICATE_AUDIO_WEBHOOK_PREFIX", "/a b?x#y"),
        ("REPLICATE_AUDIO_WEBHOOK_PREFIX", "/api//hooks"),
        ("BASE_URL", "not a url"),
        ("BASE_URL", "https://[::1"),
        ("BASE_URL", "https://app.example.com:99999"),
        ("BASE_URL", "https://app.example.com/?next=x"),
        ("REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS", "https://[::1"),
        ("REPLICATE_WEBHOOK_SECRET", "whsec_not base64"),
        ("REPLICATE_WEBHOOK_SECRET", "whsec_abc"),
        ("REPLICATE_API_BASE_URL", "ftp://x"),
        ("REPLICATE_AUDIO_INTAKE_TIMEOUT", "0"),
        ("REPLICATE_AUDIO_INTAKE_TIMEOUT", "soon"),
        ("REPLICATE_AUDIO_INTAKE_TIMEOUT", "inf"),
        ("REPLICATE_AUDIO_CREATE_TIMEOUT", "-1"),
        ("REPLICATE_AUDIO_CREATE_TIMEOUT", "nan"),
        ("REPLICATE_AUDIO_UNSENT_CREATES", "retry"),
        ("REPLICATE_AUDIO_UNSENT_CREATES", ""),
    ],
)
def test_malformed_values_name_the_variable(variable: str, value: str) -> None:
    """A malformed value fails at start-up with an error naming the variable."""
    with pytest.raises(ConfigurationError, match=variable) as caught:
        Settings.from_env({variable: value})
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("field", "value", "variable"),
    [
        ("intake_timeout", 0.0, "REPLICATE_AUDIO_INTAKE_TIMEOUT"),
        ("create_timeout", float("inf"), "REPLICATE_AUDIO_CREATE_TIMEOUT"),
        ("unsent_creates", "ignore", "REPLICATE_AUDIO_UNSENT_CREATES"),
    ],
)
def test_settings_built_in_code_are_checked_too(field: str, value: object, variable: str) -> None:
    """Settings built directly (not from the environment) refuse the same values, naming the
    variable that sets them."""
    with pytest.raises(ConfigurationError, match=variable) as caught:
        Settings(**{field: value})
    assert caught.value.variable == variable


def test_public_http_base_url_refused() -> None:
    """Replicate only calls https webhooks, so a public http BASE_URL is refused."""
    with pytest.raises(ConfigurationError, match="https"):
        Settings.from_env({"BASE_URL": "http://app.example.com"})


@pytest.mark.parametrize(
    "url", ["http://localhost:8000", "http://127.0.0.5:1", "http://[::1]:80", "http://a.localhost"]
)
def test_local_http_base_url_allowed(url: str) -> None:
    """Local development URLs may be plain http."""
    assert Settings.from_env({"BASE_URL": url}).base_url == url


def test_insecure_base_url_allowed_explicitly() -> None:
    """REPLICATE_AUDIO_ALLOW_INSECURE_BASE_URL lets a public http URL through."""
    env = {"BASE_URL": "http://tunnel.example.com", "REPLICATE_AUDIO_ALLOW_INSECURE_BASE_URL": "1"}
    assert Settings.from_env(env).allow_insecure_base_url


@pytest.mark.parametrize(
    ("entry", "url", "allowed"),
    [
        ("replicate.delivery", ("https", "replicate.delivery", None), True),
        ("replicate.delivery", ("https", "pbxt.replicate.delivery", 443), True),
        ("replicate.delivery", ("http", "replicate.delivery", None), False),
        ("replicate.delivery", ("https", "replicate.delivery", 8443), False),
        ("replicate.delivery", ("https", "evilreplicate.delivery", None), False),
        ("replicate.delivery", ("https", "replicate.delivery.evil.com", None), False),
        ("http://127.0.0.1:8787", ("http", "127.0.0.1", 8787), True),
        ("http://127.0.0.1:8787", ("http", "127.0.0.1", 8788), False),
        ("https://cdn.example.com", ("https", "cdn.example.com", None), True),
        ("https://cdn.example.com", ("https", "a.cdn.example.com", None), False),
    ],
)
def test_allow_list_entries(entry: str, url: tuple[str, str, int | None], allowed: bool) -> None:
    """Bare hosts allow https on them and subdomains; origins allow exactly themselves."""
    assert AllowedOrigin.parse(entry).allows(*url) is allowed


def test_secret_errors_do_not_echo_the_secret() -> None:
    """A malformed secret is reported without any of its characters."""
    with pytest.raises(ConfigurationError) as caught:
        Settings.from_env({"REPLICATE_WEBHOOK_SECRET": "whsec_no!secret"})
    assert "no!secret" not in str(caught.value)
    assert "whsec_no" not in str(caught.value)


def test_recovery_knobs_come_from_the_environment() -> None:
    """REPLICATE_AUDIO_LEASE, _SWEEP_INTERVAL (0 allowed: no sweep) and _RECONCILE_AFTER set
    the facade's defaults; by default a dead worker's job is taken over within 60 s."""
    from replicate_audio import ReplicateAudio
    from replicate_audio.storage import MemoryStore

    defaults = Settings()
    assert defaults.lease + defaults.sweep_interval <= 60
    settings = Settings.from_env(
        {
            "REPLICATE_AUDIO_LEASE": "12.5",
            "REPLICATE_AUDIO_SWEEP_INTERVAL": "0",
            "REPLICATE_AUDIO_RECONCILE_AFTER": "300",
        }
    )
    assert (settings.lease, settings.sweep_interval, settings.reconcile_after) == (12.5, 0, 300)
    audio = ReplicateAudio(settings, MemoryStore())
    assert audio.lease == 12.5
    assert (audio.background.sweep_interval, audio.background.reconcile_after) == (0, 300)
    given = ReplicateAudio(settings, MemoryStore(), lease=5, sweep_interval=1)
    assert (given.lease, given.background.sweep_interval) == (5, 1)
    for variable, value in (
        ("REPLICATE_AUDIO_LEASE", "0"),
        ("REPLICATE_AUDIO_SWEEP_INTERVAL", "-1"),
        ("REPLICATE_AUDIO_RECONCILE_AFTER", "soon"),
    ):
        with pytest.raises(ConfigurationError, match=variable):
            Settings.from_env({variable: value})
