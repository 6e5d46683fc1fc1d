"""The text front-end in one call: what a request's `input` becomes before any prompt.

    prepare_text(text, normalize=True, max_chars=200, first_max_chars=100) -> SpokenText

`normalize_text` (unless `normalize` is false), then `split_segments`. The speech pipeline
and `POST /v1/audio/normalize` both call it, so what the endpoint shows is what is spoken.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.text.normalize import normalize_text
from app.text.segments import split_segments


@dataclass(frozen=True)
class SpokenText:
    """`normalized`: the text to speak; `segments`: it cut into generations, in order.

    `segments` is empty when nothing speakable is left (only emoji or markup, say).
    """

    normalized: str
    segments: list[str]


def prepare_text(text: str, *, normalize: bool, max_chars: int, first_max_chars: int) -> SpokenText:
    """Normalize (when asked) and segment `text`; limits as in `split_segments`."""
    normalized = normalize_text(text) if normalize else text
    segments = split_segments(normalized, max_chars=max_chars, first_max_chars=first_max_chars)
    return SpokenText(normalized=normalized, segments=segments)
