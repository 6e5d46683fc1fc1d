"""Segments: greedy packing, clause and word cuts, a short first segment, and no word
ever lost, added, reordered or cut."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.text.segments import split_segments
from app.text.tags import EMOTION_TAG
from tests.text.strategies import TAGS, any_text, prose

LONG_FIRST = (
    "When the committee finally met, after months of delay, it decided, against all "
    "advice, to postpone everything again; nobody was surprised. Then lunch came."
)


@pytest.mark.parametrize(
    ("text", "max_chars", "first_max_chars", "segments"),
    [
        # The first segment is one sentence; the rest are packed up to max_chars.
        (
            "One here. Two here. Three here. Four here.",
            30,
            30,
            ["One here.", "Two here. Three here.", "Four here."],
        ),
        ("Short.", 200, 100, ["Short."]),
        # A long first sentence gives its first clauses only.
        (
            LONG_FIRST,
            200,
            40,
            [
                "When the committee finally met,",
                "after months of delay, it decided, against all advice, to postpone "
                "everything again; nobody was surprised. Then lunch came.",
            ],
        ),
        # An over-long sentence is cut at clause punctuation, then at word boundaries.
        (
            "Hi. " + LONG_FIRST,
            60,
            60,
            [
                "Hi.",
                "When the committee finally met, after months of delay,",
                "it decided, against all advice,",
                "to postpone everything again; nobody was surprised.",
                "Then lunch came.",
            ],
        ),
        (
            "Hi. alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu",
            20,
            20,
            ["Hi.", "alpha beta gamma", "delta epsilon zeta", "eta theta iota kappa", "lambda mu"],
        ),
        # Dashes standing alone end clauses too.
        (
            "Hi. We went out — it rained — and came back home.",
            20,
            20,
            ["Hi.", "We went out —", "it rained —", "and came back home."],
        ),
        # A word longer than the limit stands alone, whole.
        (
            "See https://example.com/a/very/long/path now.",
            10,
            10,
            ["See", "https://example.com/a/very/long/path", "now."],
        ),
        # Emotion tags travel with the words after them (before them at the very end).
        (
            "That's funny. <laugh> Anyway, go on.",
            200,
            100,
            ["That's funny.", "<laugh> Anyway, go on."],
        ),
        ("<sigh> Fine. Okay. <laugh>", 200, 100, ["<sigh> Fine.", "Okay. <laugh>"]),
        ("<laugh>", 200, 100, ["<laugh>"]),
        ("", 200, 100, []),
        (" \n ", 200, 100, []),
    ],
)
def test_cases(text: str, max_chars: int, first_max_chars: int, segments: list[str]) -> None:
    assert split_segments(text, max_chars=max_chars, first_max_chars=first_max_chars) == segments


def test_the_first_segment_does_not_grow_with_the_input() -> None:
    first = "The first sentence is here."
    long_text = first + " " + " ".join(["Another sentence follows it, and more."] * 100)
    short = split_segments(first, max_chars=200, first_max_chars=100)
    long = split_segments(long_text, max_chars=200, first_max_chars=100)
    assert short[0] == long[0] == first
    assert len(long) > 10


@pytest.mark.parametrize(("max_chars", "first_max_chars"), [(0, 10), (10, 0), (-1, -1)])
def test_limits_below_one_are_refused(max_chars: int, first_max_chars: int) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        split_segments("Hello.", max_chars=max_chars, first_max_chars=first_max_chars)


def _fits(segment: str, limit: int) -> bool:
    # Only a single word (with the tags or punctuation glued to it) may exceed a limit.
    words = EMOTION_TAG.sub("", segment).split()
    return len(segment) <= limit or sum(any(ch.isalnum() for ch in w) for w in words) <= 1


@settings(max_examples=300, deadline=None)
@given(any_text, st.integers(1, 250), st.integers(1, 150))
def test_words_are_kept_and_limits_hold(text: str, max_chars: int, first_max_chars: int) -> None:
    segments = split_segments(text, max_chars=max_chars, first_max_chars=first_max_chars)
    assert " ".join(segments).split() == text.split()
    if segments:
        assert _fits(segments[0], first_max_chars)
    assert all(_fits(segment, max_chars) for segment in segments[1:])


@settings(max_examples=200, deadline=None)
@given(prose(), st.integers(20, 250))
def test_tags_are_never_split_and_never_alone(text: str, max_chars: int) -> None:
    segments = split_segments(text, max_chars=max_chars, first_max_chars=max_chars // 2 + 1)
    for tag in TAGS:
        assert sum(s.count(tag) for s in segments) == text.count(tag)
    speakable = [s for s in segments if any(ch.isalnum() for ch in EMOTION_TAG.sub("", s))]
    if any(ch.isalnum() for ch in EMOTION_TAG.sub("", text)):
        assert speakable == segments
