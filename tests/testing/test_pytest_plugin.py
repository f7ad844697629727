"""The pytest plugin installed with the package: ``replicate_simulator`` and ``webhook_secret``."""

from __future__ import annotations

import pytest

from replicate_audio.testing import ReplicateSimulator
from replicate_audio.testing.signing import sign_webhook
from replicate_audio.webhooks import verify_webhook


def test_fixtures_give_a_running_simulator_signing_with_the_secret(
    replicate_simulator: ReplicateSimulator, webhook_secret: str
) -> None:
    """The fixture simulator runs, and signs with the webhook_secret fixture."""
    assert replicate_simulator.secret == webhook_secret
    assert replicate_simulator.client().webhooks.default.secret().key == webhook_secret
    body = b'{"id": "p1", "status": "starting"}'
    verify_webhook(sign_webhook(body, webhook_secret), body, webhook_secret)
    prediction = replicate_simulator.client().predictions.create(
        model="stability-ai/stable-audio-2.5", input={"duration": 1}
    )
    assert replicate_simulator.wait_for_prediction(prediction.id)["status"] == "succeeded"


def test_plugin_is_registered_by_entry_point(pytestconfig: pytest.Config) -> None:
    """pytest loads the plugin from the package's pytest11 entry point."""
    assert pytestconfig.pluginmanager.has_plugin("replicate_audio")


def test_plugin_imports_no_optional_dependency() -> None:
    """Importing the plugin pulls in neither FastAPI, Flask nor uvicorn."""
    import subprocess
    import sys

    code = (
        "import sys, replicate_audio.testing.pytest_plugin;"
        "print([m for m in ('fastapi', 'flask', 'uvicorn', 'starlette') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
