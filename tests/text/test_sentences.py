"""Sentence boundaries: the hard cases of English, and no word ever lost or cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings

from app.text.sentences import split_sentences
from tests.text.strategies import any_text


@pytest.mark.parametrize(
    ("text", "sentences"),
    [
        ("Dr. Smith arrived. He was late.", ["Dr. Smith arrived.", "He was late."]),
        ("Mr. and Mrs. Jones met St. Peter.", ["Mr. and Mrs. Jones met St. Peter."]),
        ("Ask Dr. Who about it. He knows.", ["Ask Dr. Who about it.", "He knows."]),
        ("Use a tool, e.g. a hammer. Then stop.", ["Use a tool, e.g. a hammer.", "Then stop."]),
        ("The U.S. economy grew. Prices rose.", ["The U.S. economy grew.", "Prices rose."]),
        ("I live in the U.S. He lives in Canada.", ["I live in the U.S.", "He lives in Canada."]),
        ("Pi is 3.14 roughly. Nobody disputes it.", ["Pi is 3.14 roughly.", "Nobody disputes it."]),
        ("J. R. R. Tolkien wrote. They read.", ["J. R. R. Tolkien wrote.", "They read."]),
        ("Wait... what happened? Nobody knows.", ["Wait... what happened?", "Nobody knows."]),
        (
            "Visit https://example.com/a.b today. It is free.",
            ["Visit https://example.com/a.b today.", "It is free."],
        ),
        ("Mail john.doe@example.com now. Thanks.", ["Mail john.doe@example.com now.", "Thanks."]),
        ('"Stop!" she said. He stopped.', ['"Stop!" she said.', "He stopped."]),
        ("1. Buy milk. 2. Walk the dog.", ["1. Buy milk.", "2. Walk the dog."]),
        ("Ms. Lee lives approx. 5 km away. Go.", ["Ms. Lee lives approx. 5 km away.", "Go."]),
        (
            "It is funny <laugh> really. Okay <sigh> fine.",
            ["It is funny <laugh> really.", "Okay <sigh> fine."],
        ),
        ("Chapter One\n\nIt was a dark night.", ["Chapter One", "It was a dark night."]),
        ("A line\nwrapped by hand. Next.", ["A line wrapped by hand.", "Next."]),
        ("Hello there! How are you? I'm fine.", ["Hello there!", "How are you?", "I'm fine."]),
        ("No end here", ["No end here"]),
        ("   ", []),
        ("", []),
    ],
)
def test_hard_cases(text: str, sentences: list[str]) -> None:
    assert split_sentences(text) == sentences


@settings(max_examples=300, deadline=None)
@given(any_text)
def test_no_word_is_lost_added_or_cut(text: str) -> None:
    sentences = split_sentences(text)
    assert " ".join(sentences).split() == text.split()
    assert all(s and s == " ".join(s.split()) for s in sentences)
