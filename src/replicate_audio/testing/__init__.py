"""Test helpers for apps that use replicate-audio: signed webhooks and a local Replicate."""

from __future__ import annotations

from .faults import Faults
from .signing import generate_secret, sign_webhook
from .simulator import ReplicateSimulator

__all__ = ["Faults", "ReplicateSimulator", "generate_secret", "sign_webhook"]
