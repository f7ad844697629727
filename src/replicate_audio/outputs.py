"""A prediction's output as named files: a URL string, a list, a dict of named files (stems),
nested lists and dicts, and ``data:`` URIs (what sync mode returns), whatever the model."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import unquote_to_bytes

import attrs

from .errors import DownloadError, DownloadTooLargeError

__all__ = ["OutputFile", "decode_data_uri", "output_files", "primary_output"]

_AUDIO_SUFFIX = re.compile(r"\.(mp3|wav|flac|ogg|oga|opus|m4a|aac|aiff?|webm)(?:[?#].*)?$", re.I)
_DATA_URI = re.compile(r"data:([^,]*),(.*)", re.S)


@attrs.frozen
class OutputFile:
    """One file of a prediction's output: its name (``output`` for a lone URL, the index in
    a list, the key in a dict, joined by ``/`` when nested) and its URL or ``data:`` URI.

    Example:
        >>> OutputFile("vocals", "https://replicate.delivery/x/vocals.wav").is_audio
        True
    """

    name: str
    url: str

    @property
    def is_audio(self) -> bool:
        """Whether the URL looks like audio (by its extension, or a ``data:audio/`` type)."""
        if self.url.startswith("data:"):
            return self.url[5:].lower().startswith("audio/")
        return _AUDIO_SUFFIX.search(self.url) is not None


def output_files(output: Any, name: str = "") -> tuple[OutputFile, ...]:
    """Every file in *output*, in order, each with its name.

    *output* is what Replicate sends (JSON: strings, lists, dicts), or what the
    ``replicate`` client returns, whose files are ``FileOutput`` objects (anything with a
    string ``url``).

    Example:
        >>> [f.name for f in output_files({"vocals": "https://x/v.wav", "drums": ["https://x/d.wav"]})]
        ['vocals', 'drums/0']
        >>> output_files("https://x/a.mp3")
        (OutputFile(name='output', url='https://x/a.mp3'),)
    """
    if isinstance(output, str):
        return (OutputFile(name or "output", output),) if output else ()
    url = getattr(output, "url", None)
    if isinstance(url, str) and not isinstance(output, dict | list):  # the client's FileOutput
        return output_files(url, name)
    if isinstance(output, dict):
        items: Sequence[tuple[str, Any]] = [(str(key), value) for key, value in output.items()]
    elif isinstance(output, list):
        items = [(str(index), value) for index, value in enumerate(output)]
    else:
        return ()
    files: list[OutputFile] = []
    for key, value in items:
        files.extend(output_files(value, f"{name}/{key}" if name else key))
    return tuple(files)


def primary_output(
    files: Sequence[OutputFile], wanted: str | int | None = None
) -> OutputFile | None:
    """The file that is "the audio": the one *wanted* names (a dict key, a list index, or a
    nested name), else the first that looks like audio, else the first.

    Example:
        >>> files = output_files(["https://x/cover.png", "https://x/song.mp3"])
        >>> primary_output(files).name, primary_output(files, 0).name
        ('1', '0')
    """
    if wanted is not None:
        return next((file for file in files if file.name == str(wanted)), None)
    return next((file for file in files if file.is_audio), files[0] if files else None)


def decode_data_uri(uri: str, *, limit: int) -> bytes:
    """The bytes of a ``data:`` URI (RFC 2397), base64 or percent-encoded.

    Raises:
        DownloadTooLargeError: the data is larger than *limit* bytes.
        DownloadError: it is not a ``data:`` URI, or its data does not decode.

    Example:
        >>> decode_data_uri("data:audio/wav;base64,UklGRg==", limit=100)
        b'RIFF'
    """
    match = _DATA_URI.fullmatch(uri)
    if match is None:
        raise DownloadError("not a data: URI", url=uri[:64], retryable=False)
    header, payload = match.groups()
    # Checked before decoding: base64 grows by 4/3, so this bounds the work too.
    if len(payload) * 3 // 4 > limit + 3:
        raise DownloadTooLargeError(
            f"the data: URI holds more than {limit} bytes", url=uri[:64], retryable=False
        )
    try:
        if header.lower().endswith(";base64"):
            data = base64.b64decode(payload, validate=True)
        else:
            data = unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as error:
        raise DownloadError(
            f"the data: URI does not decode: {error}", url=uri[:64], retryable=False
        ) from None
    if len(data) > limit:
        raise DownloadTooLargeError(
            f"the data: URI holds more than {limit} bytes", url=uri[:64], retryable=False
        )
    return data
