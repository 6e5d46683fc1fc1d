"""Long text cut into segments, each spoken by its own generation.

    split_segments(text, max_chars=200, first_max_chars=100) -> list[str]

Sentences (app/text/sentences.py) are packed greedily into segments of at most
`max_chars` characters. A sentence longer than that is cut at clause punctuation
(`,` `;` `:` and dashes), and a clause still too long at word boundaries. The first
segment is one sentence only, or as many of its first clauses as fit in
`first_max_chars`, so the first generation, and the time to first audio, stay short
whatever the input's length.

Guarantees, whatever the input:
- `" ".join(segments).split() == text.split()`: no word is lost, added, reordered or
  cut, so emotion tags (`<laugh>`) and URLs stay whole;
- each segment fits its limit unless it is a single word longer than the limit;
- every segment holds something to say: an emotion tag (or an opening quote) on its
  own travels with the word after it, other punctuation with the word before it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from app.text.sentences import split_sentences
from app.text.tags import EMOTION_TAG

# A word after which a clause may end: one ending in a comma, semicolon, colon or dash
# (closing quotes or brackets may follow), or a dash standing alone.
_CLAUSE_END = re.compile(r"(?:[,;:—–]|--)[\"'”’)\]]*$|^[-—–]+$")
# Units with nothing to say that belong to what follows them.
_OPENS = re.compile(r"\s*(?:<[a-z]+>|[\"“‘(\[])", re.IGNORECASE)


def split_segments(text: str, *, max_chars: int, first_max_chars: int) -> list[str]:
    """Cut `text` into segments to generate one after another (see the module doc).

    `max_chars` bounds every segment, `first_max_chars` the first one. Blank text
    gives `[]`. Raises ValueError when a limit is below 1.
    """
    if max_chars < 1 or first_max_chars < 1:
        raise ValueError("segment limits must be at least 1 character")
    sentences = _glue_silent(split_sentences(text), sep=" ")
    if not sentences:
        return []
    head = _split_long(sentences[0], first_max_chars)
    pieces = [" ".join(head[1:])] if len(head) > 1 else []
    pieces += sentences[1:]
    rest = _pack((part for piece in pieces for part in _split_long(piece, max_chars)), max_chars)
    return [head[0], *rest]


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in EMOTION_TAG.sub("", text))


def _glue_silent(units: list[str], *, sep: str) -> list[str]:
    """Join each unit with nothing to say to a speakable neighbour: a tag or an opening
    quote or bracket to the unit after it, other punctuation to the unit before it."""
    glued: list[str] = []
    pending: list[str] = []
    for unit in units:
        if _speakable(unit):
            glued.append(sep.join([*pending, unit]))
            pending = []
        elif glued and not pending and not _OPENS.match(unit):
            glued[-1] = sep.join([glued[-1], unit])
        else:
            pending.append(unit)
    if pending:
        if glued:
            glued[-1] = sep.join([glued[-1], *pending])
        else:
            glued.append(sep.join(pending))
    return glued


def _split_long(sentence: str, limit: int) -> list[str]:
    """`sentence` as one piece, or cut into clause-then-word pieces that fit `limit`."""
    if len(sentence) <= limit:
        return [sentence]
    clauses: list[list[str]] = [[]]
    for word in _glue_silent(sentence.split(" "), sep=" "):
        clauses[-1].append(word)
        if _CLAUSE_END.search(word):
            clauses.append([])
    parts = (part for words in clauses if words for part in _pack(words, limit))
    return _pack(parts, limit)


def _pack(parts: Iterable[str], limit: int) -> list[str]:
    """Greedily join `parts` with spaces into strings of at most `limit` characters."""
    packed: list[str] = []
    for part in parts:
        if packed and len(packed[-1]) + 1 + len(part) <= limit:
            packed[-1] += " " + part
        else:
            packed.append(part)
    return packed
