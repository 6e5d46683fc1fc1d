"""The response formats a client may ask for, and their media types: stated once."""

from __future__ import annotations

from typing import Final, Literal, get_args

ResponseFormat = Literal["mp3", "opus", "aac", "flac", "wav", "pcm"]

FORMATS: Final[tuple[str, ...]] = get_args(ResponseFormat)

MEDIA_TYPES: Final[dict[str, str]] = {
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    # audio/L16 means big-endian samples (RFC 2586); ours are little-endian.
    "pcm": "audio/pcm",
}
