"""Dispatchers: how recorded jobs get processed (in process, or on Dramatiq workers)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .inprocess import InProcessDispatcher
from .protocols import Dispatcher, JobRunner

if TYPE_CHECKING:
    from .dramatiq import DramatiqDispatcher

__all__ = ["Dispatcher", "DramatiqDispatcher", "InProcessDispatcher", "JobRunner"]


def __getattr__(name: str) -> Any:
    # Dramatiq is an optional dependency: import its dispatcher on first use.
    if name == "DramatiqDispatcher":
        from .dramatiq import DramatiqDispatcher

        return DramatiqDispatcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
