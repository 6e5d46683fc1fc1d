"""English sentence boundaries, found by sentencex.

sentencex (Wikimedia's rule-based segmenter, a compiled extension, no data to download)
was chosen by measurement over pysbd, blingfire, syntok and nltk's untrained punkt:
38 of 40 hard cases right, 12 µs per 1,000 characters and 1.3 ms worst case on
adversarial 4,096-character inputs, where pysbd (40 of 40) takes 5 ms per 1,000
characters and 1.3 s on many short lines (`bench/sentence_split.py`,
docs/benchmarks.md). Its one over-split in the table, a list enumerator left alone
("1." in "1. Buy milk. 2. Walk the dog."), is joined back here, as are sentences it
ends after an abbreviation that always qualifies what follows ("Dr. Who").
"""

from __future__ import annotations

import re

import sentencex

# "1." "12)" "a." "(b)" "iv." standing alone: they number the sentence after them.
_ENUMERATOR = re.compile(r"\(?(?:\d{1,3}|[A-Za-z]|[ivxlcdm]{1,6})[.)]")
# Abbreviations that qualify the word after them, so never end a sentence; sentencex
# splits after them before a question word ("Dr. Who") or does not know them ("approx.").
_LEADING_ABBREVIATION = re.compile(
    r"(?:^|\s)(?:Mr|Mrs|Ms|Mx|Dr|Prof|St|Mt|Gen|Sen|Rep|Gov|Capt|Lt|Col|Sgt|Rev|Hon"
    r"|vs|e\.g|i\.e|cf|approx)\.$"
)


def split_sentences(text: str) -> list[str]:
    """Split English `text` into sentences, each with its whitespace collapsed.

    Boundaries fall only on whitespace, so the sentences' words, joined, are exactly
    the words (`str.split`) of `text`. Blank lines always end a sentence; a single
    line break does not (hard-wrapped prose). Empty or blank text gives `[]`.
    """
    parts: list[str] = []
    for raw in sentencex.segment("en", text):
        part = str(raw)
        if parts and _belongs_to_previous(parts[-1], part):
            parts[-1] += part
        else:
            parts.append(part)
    return [" ".join(part.split()) for part in parts if part.strip()]


def _belongs_to_previous(previous: str, part: str) -> bool:
    inside_word = previous[-1:].strip() != "" and part[:1].strip() != ""
    if inside_word or not part.strip():
        return inside_word
    last = previous.rstrip()
    return bool(_ENUMERATOR.fullmatch(last) or _LEADING_ABBREVIATION.search(last))
