"""Text that arrives in pieces (an LLM writing), released sentence by sentence.

    buffer = SentenceBuffer(max_chars=200)
    buffer.append("Hello there. Th")   # -> "Hello there."
    buffer.append("is is a test. ")    # -> "This is a test."
    buffer.flush()                     # -> "" (nothing left)

A sentence is complete once the segmenter (app/text/sentences.py) sees the start of the
next one after it, or at a flush. It is also complete as soon as the client has ended it:
the buffer ends in whitespace after sentence-final punctuation and the segmenter would
split there whichever word came next, a capital or not ("Hello there. " but not "Dr. ",
"1. ", "U.S. ", "J. ", "a.m. " nor "Wait... ", which the next word may continue: LiveKit
sends one word at a time). That keeps the first audio of a client that sends whole
sentences (pipecat) from waiting for the next one. A run-on that passes ``max_chars``
with no sentence end is released at clause, then word boundaries (app/text/segments.py),
keeping its last piece, which may go on. Words are never cut: what is kept is the raw
text after the last released word, so a word arriving in two pieces is joined back.
"""

from __future__ import annotations

import re

from app.text.segments import split_segments
from app.text.sentences import split_sentences
from app.text.tags import EMOTION_TAG

_FINAL = re.compile(r"[.!?…][\"'”’)\]]*$")
_WORD = re.compile(r"\S+")
_PROBES = ("The", "the")
"""A sentence start, and a word that goes on a sentence: a client ended its sentence only
if the segmenter splits before both (after an abbreviation or an initial it splits before
a capital alone)."""


class SentenceBuffer:
    def __init__(self, max_chars: int) -> None:
        if max_chars < 1:
            raise ValueError("max_chars must be at least 1")
        self.max_chars = max_chars
        self._text = ""

    def __len__(self) -> int:
        """Characters buffered and not yet released."""
        return len(self._text)

    def append(self, text: str) -> str:
        """Add ``text``; return the complete sentences it released (space separated), or ""."""
        self._text += text
        sentences = split_sentences(self._text)
        if not sentences:
            return ""
        done, tail = sentences[:-1], sentences[-1]
        if self._text[-1:].isspace() and _ends_sentence(tail):
            done, tail = sentences, ""
        # A tag or an opening quote waits for the words it goes with.
        while done and not _speakable(done[-1]):
            tail = f"{done.pop()} {tail}".strip()
        if len(tail) > self.max_chars:
            pieces = split_segments(tail, max_chars=self.max_chars, first_max_chars=self.max_chars)
            done += pieces[:-1]
            tail = pieces[-1]
        if not done:
            return ""
        self._text = self._text[_start_of_last_words(self._text, len(tail.split())) :]
        return " ".join(done)

    def flush(self) -> str:
        """Everything buffered, complete or not (whitespace collapsed); the buffer empties."""
        text, self._text = " ".join(self._text.split()), ""
        return text

    def clear(self) -> None:
        self._text = ""


def _ends_sentence(sentence: str) -> bool:
    if not _FINAL.search(sentence):
        return False
    for word in _PROBES:
        probe = split_sentences(f"{sentence} {word}")
        if len(probe) < 2 or probe[-1] != word:
            return False
    return True


def _speakable(text: str) -> bool:
    return any(ch.isalnum() for ch in EMOTION_TAG.sub("", text))


def _start_of_last_words(text: str, count: int) -> int:
    """Index in ``text`` where its last ``count`` words begin (its end when count is 0)."""
    if count == 0:
        return len(text)
    starts = [m.start() for m in _WORD.finditer(text)]
    return starts[-count]
