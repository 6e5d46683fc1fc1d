"""Orpheus emotion tags: spoken as sounds, so text processing keeps them whole.

The fine-tuned Orpheus models render `<laugh>`, `<chuckle>`, `<sigh>`, `<cough>`,
`<sniffle>`, `<groan>`, `<yawn>` and `<gasp>` as the sound itself. They are plain
text to the tokenizer (not control tokens), contain no whitespace, and must never be
split, stripped as markup or rewritten by normalization.
"""

from __future__ import annotations

import re

EMOTION_TAGS: tuple[str, ...] = (
    "laugh",
    "chuckle",
    "sigh",
    "cough",
    "sniffle",
    "groan",
    "yawn",
    "gasp",
)

# Case-insensitive on input; normalization writes the lowercase spelling the model knows.
EMOTION_TAG = re.compile(r"<(" + "|".join(EMOTION_TAGS) + r")>", re.IGNORECASE)


def is_emotion_tag(text: str) -> bool:
    """True when `text` is exactly one emotion tag, such as `<laugh>`."""
    return EMOTION_TAG.fullmatch(text) is not None
