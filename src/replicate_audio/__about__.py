"""The installed version of replicate-audio."""

__version__ = "0.1.0"
