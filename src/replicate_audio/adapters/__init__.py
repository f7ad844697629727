"""Integrations with web frameworks: ``adapters.fastapi`` and ``adapters.flask``."""
