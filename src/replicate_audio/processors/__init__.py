"""Post-processors, and the registry that routes each content type to one."""

from __future__ import annotations

import threading
from collections.abc import KeysView, Mapping

from ..errors import ConfigurationError, UnknownContentTypeError
from .base import AudioPostProcessor, ProcessingContext
from .builtin import (
    BackgroundMusicProcessor,
    SoundEffectProcessor,
    StemsProcessor,
    StoreProcessor,
)

__all__ = [
    "AudioPostProcessor",
    "BackgroundMusicProcessor",
    "ProcessingContext",
    "SoundEffectProcessor",
    "StemsProcessor",
    "StoreProcessor",
    "default_processors",
    "get_processor",
    "register_processor",
    "registered_content_types",
]

_lock = threading.Lock()
_registry: dict[str, AudioPostProcessor] = {}


def default_processors() -> dict[str, AudioPostProcessor]:
    """A fresh mapping of the built-in processors by content type."""
    return {p.content_type: p for p in (SoundEffectProcessor(), BackgroundMusicProcessor())}


_registry.update(default_processors())


def register_processor(
    content_type: str, processor: AudioPostProcessor, *, replace: bool = False
) -> None:
    """Route *content_type* to *processor*, in every app of this process.

    Raises:
        ConfigurationError: the type is registered already and *replace* is false.

    Example:
        >>> register_processor("voiceover", VoiceoverProcessor())  # doctest: +SKIP
    """
    with _lock:
        if content_type in _registry and not replace:
            raise ConfigurationError(
                "content_type", f"{content_type!r} is registered already; pass replace=True"
            )
        _registry[content_type] = processor


def get_processor(
    content_type: str, processors: Mapping[str, AudioPostProcessor] | None = None
) -> AudioPostProcessor:
    """The processor for *content_type*, from *processors* or the global registry.

    Raises:
        UnknownContentTypeError: nothing is registered for it.

    Example:
        >>> get_processor("sound_effect").content_type
        'sound_effect'
    """
    table = _registry if processors is None else processors
    try:
        return table[content_type]
    except KeyError:
        raise UnknownContentTypeError(content_type, tuple(sorted(table))) from None


def _registered_keys() -> KeysView[str]:
    """A live view of the global registry's content types, for membership tests: no copy,
    no sort (``registered_content_types`` gives a sorted snapshot)."""
    return _registry.keys()


def registered_content_types() -> tuple[str, ...]:
    """The content types of the global registry, sorted."""
    with _lock:
        return tuple(sorted(_registry))
