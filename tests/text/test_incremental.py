"""Text arriving in pieces: released whole sentences, as soon as each is known complete."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app.text.incremental import SentenceBuffer
from tests.text.strategies import any_text, prose


def feed(pieces: list[str], max_chars: int = 200) -> tuple[list[str], str]:
    buffer = SentenceBuffer(max_chars)
    released = [out for piece in pieces if (out := buffer.append(piece))]
    return released, buffer.flush()


def test_a_sentence_is_released_when_the_next_one_starts() -> None:
    buffer = SentenceBuffer(200)
    assert buffer.append("Hello there") == ""
    assert buffer.append(". How") == "Hello there."
    assert buffer.append(" are you") == ""
    assert buffer.flush() == "How are you"
    assert len(buffer) == 0


def test_a_sentence_the_client_ended_is_released_at_once() -> None:
    # pipecat: one Speak per sentence, each ending in a space.
    assert feed(["Hello there. ", "This is a test. "]) == (["Hello there.", "This is a test."], "")
    # LiveKit: one Speak per word.
    words = ["Hello ", "there. ", "This ", "is ", "a ", "test. "]
    assert feed(words) == (["Hello there.", "This is a test."], "")


@pytest.mark.parametrize(
    "text",
    [
        "I met Dr. ",
        "1. ",
        "See e.g. ",
        "Hello there.",
        "It is 3.",
        "A. ",
        "I live in the U.S. ",
        "Books by J. ",
        "At 5 a.m. ",
        "Apples, pears etc. ",
        "Wait... ",
    ],
)
def test_what_may_go_on_is_kept(text: str) -> None:
    buffer = SentenceBuffer(200)
    assert buffer.append(text) == ""
    assert buffer.flush() == text.strip()


@pytest.mark.parametrize(
    "text",
    [
        "U.S. troops left. Then",
        "J. K. Rowling wrote it. Then",
        "We met at 5 a.m. today. Then",
        "Apples, pears etc. are fruit. Then",
        "Wait... what happened? Then",
    ],
)
def test_word_by_word_an_abbreviation_does_not_end_the_sentence(text: str) -> None:
    # LiveKit sends one word per message, each followed by a space.
    words = [f"{word} " for word in text.split()]
    assert feed(words) == ([text.removesuffix(" Then")], "Then")


def test_a_word_arriving_in_pieces_is_joined_back() -> None:
    assert feed(["Hel", "lo the", "re. Wor", "ld"]) == (["Hello there."], "World")
    # A space that ended a word is kept.
    assert feed(["One. Two ", "three"]) == (["One."], "Two three")


def test_an_emotion_tag_waits_for_its_words() -> None:
    buffer = SentenceBuffer(200)
    assert buffer.append("That is funny. <laugh> ") == "That is funny."
    assert buffer.append("Anyway, go on. ") == "<laugh> Anyway, go on."


def test_a_run_on_is_released_in_pieces_that_fit() -> None:
    clause = "and then the story went on for a while, "
    released, rest = feed([clause] * 12, max_chars=100)
    assert released and all(len(r) <= 100 for r in released)
    assert " ".join([*released, rest]).split() == (clause * 12).split()


@settings(max_examples=200, deadline=None)
@given(st.one_of(prose(), any_text), st.lists(st.integers(1, 40), max_size=60))
def test_no_word_is_lost_added_reordered_or_cut(text: str, cuts: list[int]) -> None:
    pieces, at = [], 0
    for size in cuts:
        pieces.append(text[at : at + size])
        at += size
    pieces.append(text[at:])
    released, rest = feed(pieces, max_chars=60)
    assert " ".join([*released, rest]).split() == text.split()
    assert all(r.strip() for r in released)
