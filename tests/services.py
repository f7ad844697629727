"""Real services on this machine for the tests: skipped when absent, failed in CI."""

from __future__ import annotations

import os
import socket

import pytest

REQUIRE_SERVICES = os.environ.get("REPLICATE_AUDIO_REQUIRE_SERVICES") == "1"

SERVICES = {
    "postgres": ("127.0.0.1", 5432),
    "redis": ("127.0.0.1", 6379),
    "rabbitmq": ("127.0.0.1", 5672),
}


def service_available(name: str) -> bool:
    """Tell whether the named service accepts TCP connections on loopback."""
    host, port = SERVICES[name]
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def require_service(name: str) -> None:
    """Skip the calling test when *name* is not running, or fail under REQUIRE_SERVICES=1."""
    if service_available(name):
        return
    host, port = SERVICES[name]
    reason = f"{name} is not running on {host}:{port}"
    if REQUIRE_SERVICES:
        pytest.fail(f"{reason} and REPLICATE_AUDIO_REQUIRE_SERVICES=1")
    pytest.skip(reason)
