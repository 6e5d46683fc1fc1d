from __future__ import annotations

import itertools
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.base import NON_TOKEN
from app.engine.token_text import TokenTextParser
from app.vocab import CUSTOM_TOKEN_BASE, spell

N = NON_TOKEN


def parse(*deltas: str) -> list[int]:
    parser = TokenTextParser()
    out: list[int] = []
    for delta in deltas:
        out.extend(parser.feed(delta))
    return out + parser.close()


def test_one_token_per_delta_like_vllm() -> None:
    parser = TokenTextParser()
    assert parser.feed("<custom_token_13231>") == [CUSTOM_TOKEN_BASE + 13231]
    assert parser.feed("<custom_token_0>") == [CUSTOM_TOKEN_BASE]
    assert parser.feed("") == []
    assert parser.close() == []


def test_several_tokens_and_half_tokens_per_delta() -> None:
    parser = TokenTextParser()
    assert parser.feed("<custom_token_11><custom_token_4") == [128267]
    assert parser.pending == len("<custom_token_4")
    assert parser.feed("107><custom_") == [128256 + 4107]
    assert parser.feed("token_2>") == [128258]
    assert parser.pending == 0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("hello", [N]),
        ("hello world", [N, N]),
        ("  \n\t ", []),
        ("<custom_token_>", [N]),
        ("<custom_token_12x>", [N]),
        ("<custom_token_-1>", [N]),
        ("<custom_token_1234567890>", [N]),
        ("<|eot_id|>", [N]),
        ("<custom_token_5>junk<custom_token_6>", [128261, N, 128262]),
        ("<custom_token_5> junk more <custom_token_6>", [128261, N, N, 128262]),
        ("a<custom_token_<custom_token_7>", [N, 128263]),
        ("<<custom_token_7>>", [N, 128263, N]),
        ("<custom_token_٣>", [N]),  # a non-ASCII digit is not a token number
    ],
)
def test_junk_is_counted_per_piece(text: str, expected: list[int]) -> None:
    assert parse(text) == expected


def test_unfinished_token_at_end_is_junk() -> None:
    parser = TokenTextParser()
    assert parser.feed("<custom_token_5") == []
    assert parser.close() == [N]


def test_junk_without_closing_bracket_does_not_grow_the_buffer() -> None:
    parser = TokenTextParser()
    out = parser.feed("<custom_token_")
    for _ in range(1000):
        out += parser.feed("1" * 97)
        assert parser.pending <= len("<custom_token_") + 9
    out += parser.feed("<" * 10_000 + "x" * 10_000)
    assert parser.pending == 0
    assert out + parser.close() == [N]


def test_spelling_round_trip() -> None:
    assert parse(spell(128266 + 4095)) == [128266 + 4095]
    with pytest.raises(ValueError):
        spell(5)


def _split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


_token = st.integers(min_value=0, max_value=200_000).map(lambda n: ("token", n))
_junk = st.text(string.ascii_letters + string.digits + "_-!?.|", min_size=1, max_size=8).map(
    lambda s: ("junk", s)
)
_space = st.text(" \n\t", min_size=1, max_size=3).map(lambda s: ("space", s))
_cuts = st.lists(st.integers(min_value=0, max_value=10_000), max_size=16)


@given(st.lists(st.one_of(_token, _junk, _space), max_size=30), _cuts)
def test_tokens_and_junk_in_any_split(pieces: list[tuple[str, object]], cuts: list[int]) -> None:
    text = ""
    expected: list[int] = []
    previous = "space"
    for kind, value in pieces:
        if kind == "token":
            assert isinstance(value, int)
            text += f"<custom_token_{value}>"
            expected.append(CUSTOM_TOKEN_BASE + value)
        else:
            assert isinstance(value, str)
            text += value
            # Junk right after junk (no whitespace between) is the same piece.
            if kind == "junk" and previous != "junk":
                expected.append(NON_TOKEN)
        previous = kind
    assert parse(text) == expected
    assert parse(*_split(text, cuts)) == expected


_fragments = st.sampled_from(
    ["<custom_token_", "<", ">", "custom", "_token_", "12", "7", "x", " ", "\n", "<custom_token_3>"]
)


@given(st.lists(_fragments, max_size=40), _cuts)
def test_garbage_in_any_split_gives_the_same_ids(fragments: list[str], cuts: list[int]) -> None:
    text = "".join(fragments)
    whole = parse(text)
    assert parse(*_split(text, cuts)) == whole
    assert parse(*text) == whole
    assert whole.count(NON_TOKEN) <= len(text.split()) + text.count("<")
