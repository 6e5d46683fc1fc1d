"""Which sentence splitter should segment long inputs: quality on hard cases, and speed?

Runs each candidate (all offline, none downloads data at run time) over a table of hard
English cases (abbreviations, decimals, initials, ellipses, URLs, e-mail addresses,
quotes, numbered lists, Orpheus emotion tags) and counts the cases it splits exactly as
expected (sentences compared with whitespace collapsed). Then times each on a long
mixed paragraph (about 4,000 characters, the size of a full OpenAI `input`): best of
``--repeat`` runs, in microseconds per 1,000 characters, and reports the slowest of a
set of adversarial 4,096-character inputs (a request's worth): a splitter that is slow
there is a way to burn the gateway's CPU.

    python bench/sentence_split.py [--repeat 20] [--verbose]

`app.text.sentences` is the gateway's splitter: sentencex plus its two fixes.
nltk's punkt is run untrained (`PunktSentenceTokenizer()`): its trained English model
is a separate download (`punkt_tab`), which the gateway cannot do at run time.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

Splitter = Callable[[str], list[str]]

CASES: list[tuple[str, list[str]]] = [
    ("Dr. Smith arrived. He was late.", ["Dr. Smith arrived.", "He was late."]),
    ("Mr. and Mrs. Jones met St. Peter.", ["Mr. and Mrs. Jones met St. Peter."]),
    ("Use a tool, e.g. a hammer. Then stop.", ["Use a tool, e.g. a hammer.", "Then stop."]),
    ("Pick one, i.e. the red one. Go.", ["Pick one, i.e. the red one.", "Go."]),
    ("The U.S. economy grew. Prices rose.", ["The U.S. economy grew.", "Prices rose."]),
    ("Pi is 3.14 roughly. Nobody disputes it.", ["Pi is 3.14 roughly.", "Nobody disputes it."]),
    ("It costs $5.20 today. Buy it.", ["It costs $5.20 today.", "Buy it."]),
    ("J. R. R. Tolkien wrote books. They sold.", ["J. R. R. Tolkien wrote books.", "They sold."]),
    ("Wait... what happened? Nobody knows.", ["Wait... what happened?", "Nobody knows."]),
    ("I wonder... Maybe not.", ["I wonder...", "Maybe not."]),
    (
        "Visit https://example.com/a.b today. It is free.",
        ["Visit https://example.com/a.b today.", "It is free."],
    ),
    ("Go to www.example.org. It works.", ["Go to www.example.org.", "It works."]),
    ("Mail john.doe@example.com now. Thanks.", ["Mail john.doe@example.com now.", "Thanks."]),
    ('"Stop!" she said. He stopped.', ['"Stop!" she said.', "He stopped."]),
    ('He said, "I am done." Then he left.', ['He said, "I am done."', "Then he left."]),
    ("1. Buy milk. 2. Walk the dog.", ["1. Buy milk.", "2. Walk the dog."]),
    (
        "It is funny <laugh> really. Okay <sigh> fine.",
        ["It is funny <laugh> really.", "Okay <sigh> fine."],
    ),
    ("That's funny. <laugh> Anyway, go on.", ["That's funny.", "<laugh> Anyway, go on."]),
    ("Hello there! How are you? I'm fine.", ["Hello there!", "How are you?", "I'm fine."]),
    ("We meet at 5 p.m. on Friday. Be there.", ["We meet at 5 p.m. on Friday.", "Be there."]),
    ("He has a Ph.D. in physics. She too.", ["He has a Ph.D. in physics.", "She too."]),
    ("See Fig. 3 and No. 5 for details. Done.", ["See Fig. 3 and No. 5 for details.", "Done."]),
    ("It was Jan. 5 when we met. Cold day.", ["It was Jan. 5 when we met.", "Cold day."]),
    ("Apples, pears, etc. are fruit. Yes.", ["Apples, pears, etc. are fruit.", "Yes."]),
    ("Cats vs. dogs is old. Move on.", ["Cats vs. dogs is old.", "Move on."]),
    ("Really?! No way. Okay.", ["Really?!", "No way.", "Okay."]),
    ("The file report.v2.pdf is big. Open it.", ["The file report.v2.pdf is big.", "Open it."]),
    ("Version 2.0.1 shipped. Upgrade now.", ["Version 2.0.1 shipped.", "Upgrade now."]),
    (
        "no capital letters here. still a sentence.",
        ["no capital letters here.", "still a sentence."],
    ),
    ("A sentence without an end", ["A sentence without an end"]),
    ("I live in the U.S. He lives in Canada.", ["I live in the U.S.", "He lives in Canada."]),
    ("We left at 5 p.m. Then it rained.", ["We left at 5 p.m.", "Then it rained."]),
    ("(See the notes.) Next we start.", ["(See the notes.)", "Next we start."]),
    ("He works at Acme Inc. in Ohio. Nice.", ["He works at Acme Inc. in Ohio.", "Nice."]),
    ("Call me at 555-123-4567. I'll answer.", ["Call me at 555-123-4567.", "I'll answer."]),
    ("It's 40–60 km away. We drive.", ["It's 40–60 km away.", "We drive."]),
    ("Chapter One\n\nIt was a dark night.", ["Chapter One", "It was a dark night."]),
    ("- first item\n- second item", ["- first item", "- second item"]),
    ("Gen. Lee and Sen. Kerry spoke. End.", ["Gen. Lee and Sen. Kerry spoke.", "End."]),
    ("'Hi,' he said. 'Bye.' She left.", ["'Hi,' he said.", "'Bye.'", "She left."]),
    ("Ask Dr. Who about it. He knows.", ["Ask Dr. Who about it.", "He knows."]),
    ("Ms. Lee lives approx. 5 km away. Go.", ["Ms. Lee lives approx. 5 km away.", "Go."]),
]

LONG_TEXT = " ".join(
    [
        "Dr. Smith said the U.S. economy grew 3.5 percent in 2024, e.g. in services.",
        "Visit https://example.com/docs/v1.2 or mail help@example.com for more.",
        'She laughed <laugh> and said, "That is not what I meant!" Then she left...',
        "Prices rose from $5.20 to $6.10 at 10:30 a.m. on Jan. 5. Nobody was happy.",
        "J. R. R. Tolkien wrote about 1,000 pages; readers loved it. Why? Nobody knows.",
    ]
    * 11
)

# Adversarial inputs of about 4,096 characters: one request's worth of text.
ADVERSARIAL = {
    "dots": "." * 4096,
    "a.": "a." * 2048,
    "A. ": "A. " * 1365,
    "no spaces": "x" * 4096,
    "quotes": '"a." ' * 819,
    "parens": "(" * 2048 + ")" * 2048,
    "ellipses": "wait... " * 512,
    "initialisms": "U.S.A. " * 585,
    "short lines": "a\n" * 2048,
    "list": "".join(f"{i}. item\n" for i in range(500))[:4096],
}


def _squash(text: str) -> str:
    return " ".join(text.split())


def candidates() -> dict[str, Splitter]:
    import blingfire
    import pysbd
    import sentencex
    import syntok.segmenter as syntok_segmenter
    from nltk.tokenize.punkt import PunktSentenceTokenizer

    pysbd_segmenter = pysbd.Segmenter(language="en", clean=False)
    punkt = PunktSentenceTokenizer()

    def syntok_split(text: str) -> list[str]:
        return [
            "".join(token.spacing + token.value for token in sentence)
            for paragraph in syntok_segmenter.analyze(text)
            for sentence in paragraph
        ]

    from app.text.sentences import split_sentences

    naive = re.compile(r"(?<=[.!?])\s+")
    return {
        "app.text.sentences": split_sentences,
        "pysbd 0.3.4": lambda text: list(pysbd_segmenter.segment(text)),
        "blingfire 0.1.8": lambda text: blingfire.text_to_sentences(text).split("\n"),
        "sentencex 1.0.32": lambda text: list(sentencex.segment("en", text)),
        "syntok 1.4.4": syntok_split,
        "nltk punkt (untrained)": punkt.tokenize,
        "regex [.!?] + space": lambda text: naive.split(text),
    }


def quality(split: Splitter, verbose: bool) -> tuple[int, int]:
    """(cases exactly right, cases whose text the splitter kept word for word)."""
    right = kept = 0
    for text, expected in CASES:
        got = [_squash(s) for s in split(text) if s.strip()]
        right += got == expected
        kept += " ".join(got).split() == text.split()
        if verbose and got != expected:
            print(f"    miss: {got}")
    return right, kept


def speed(split: Splitter, repeat: int) -> float:
    """Best microseconds per 1,000 characters of LONG_TEXT."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        split(LONG_TEXT)
        best = min(best, time.perf_counter() - started)
    return best * 1e6 / (len(LONG_TEXT) / 1000)


def worst_case(split: Splitter) -> tuple[float, str]:
    """(slowest milliseconds over ADVERSARIAL, which input)."""
    timings = []
    for name, text in ADVERSARIAL.items():
        started = time.perf_counter()
        split(text)
        timings.append((1000 * (time.perf_counter() - started), name))
    return max(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--verbose", action="store_true", help="print each missed case")
    args = parser.parse_args()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"load {os.getloadavg()[0]:.2f}; {len(CASES)} cases; "
        f"speed text {len(LONG_TEXT)} chars"
    )
    header = f"{'splitter':<24} {'right':>7} {'kept':>7} {'us/1k chars':>12} {'worst ms':>9}"
    print(header + "  worst input")
    for name, split in candidates().items():
        if args.verbose:
            print(name)
        right, kept = quality(split, args.verbose)
        per_k = speed(split, args.repeat)
        worst, which = worst_case(split)
        print(
            f"{name:<24} {right:>3}/{len(CASES):<3} {kept:>3}/{len(CASES):<3} "
            f"{per_k:>12.0f} {worst:>9.1f}  {which}"
        )


if __name__ == "__main__":
    main()
