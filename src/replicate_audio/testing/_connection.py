"""Pointing clients and apps at a simulator: its Settings, environment and replicate client."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..config import AllowedOrigin, Settings

if TYPE_CHECKING:
    from replicate.client import Client


class SimulatorConnection:
    """How to reach a :class:`~replicate_audio.testing.simulator.ReplicateSimulator`.

    Its base class: the simulator sets the attributes declared here.
    """

    api_token: str
    secret: str

    if TYPE_CHECKING:

        @property
        def url(self) -> str: ...

    def settings(self, **overrides: Any) -> Settings:
        """:class:`Settings` pointed at this simulator, with *overrides* applied.

        Example:
            >>> from replicate_audio.testing import ReplicateSimulator
            >>> with ReplicateSimulator() as sim:
            ...     sim.settings(base_url="http://127.0.0.1:8000").api_base_url == sim.url
            True
        """
        values: dict[str, Any] = {
            "api_base_url": self.url,
            "api_token": self.api_token,
            "webhook_secrets": (self.secret,),
            "allowed_output_hosts": (AllowedOrigin.parse(self.url),),
            "allow_private_output_hosts": True,
        }
        return Settings(**(values | overrides))

    def environ(self, **variables: str) -> dict[str, str]:
        """The environment variables that point an app in another process at this simulator
        (what :meth:`settings` sets), plus *variables*; merge it into ``os.environ``.

        Example:
            >>> from replicate_audio.testing import ReplicateSimulator
            >>> with ReplicateSimulator() as sim:
            ...     env = sim.environ(BASE_URL="http://127.0.0.1:8000")
            ...     env["REPLICATE_API_BASE_URL"] == sim.url, env["BASE_URL"]
            (True, 'http://127.0.0.1:8000')
        """
        return {
            "REPLICATE_API_BASE_URL": self.url,
            "REPLICATE_API_TOKEN": self.api_token,
            "REPLICATE_WEBHOOK_SECRET": self.secret,
            "REPLICATE_AUDIO_ALLOWED_OUTPUT_HOSTS": self.url,
            "REPLICATE_AUDIO_ALLOW_PRIVATE_OUTPUT_HOSTS": "1",
            **variables,
        }

    def client(self, **options: Any) -> Client:
        """The real ``replicate.Client``, pointed at this simulator with its token; *options*
        go to the client (and its httpx client), e.g. ``headers={"Cancel-After": "5s"}``.

        Example:
            >>> from replicate_audio.testing import ReplicateSimulator
            >>> with ReplicateSimulator() as sim:
            ...     sim.client(headers={"Cancel-After": "1m"}).models.get("meta/musicgen").name
            'musicgen'
        """
        from replicate.client import Client

        return Client(api_token=self.api_token, base_url=self.url, **options)
