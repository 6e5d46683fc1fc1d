"""The Orpheus vocabulary: id layout and spellings."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app import vocab as tk
from app.engine.token_text import TokenTextParser
from app.vocab import (
    AUDIO_TOKEN_BASE,
    AUDIO_TOKEN_END,
    audio_token_id,
    spell,
    spell_all,
    token_slot_code,
)

codes = st.integers(0, 4095)


def test_constants_follow_the_custom_token_layout() -> None:
    assert tk.CUSTOM_TOKEN_BASE + 1 == tk.START_OF_SPEECH
    assert AUDIO_TOKEN_BASE == tk.CUSTOM_TOKEN_BASE + tk.AUDIO_TOKEN_OFFSET == 128266
    assert AUDIO_TOKEN_END == AUDIO_TOKEN_BASE + 7 * 4096


@given(slot=st.integers(0, 6), code=codes)
def test_audio_token_id_round_trips(slot: int, code: int) -> None:
    token_id = audio_token_id(slot, code)
    assert token_id == 128256 + 10 + slot * 4096 + code
    assert token_slot_code(token_id) == (slot, code)


def test_code_range_edges() -> None:
    assert token_slot_code(audio_token_id(0, 0)) == (0, 0)
    assert token_slot_code(audio_token_id(6, 4095)) == (6, 4095)
    assert token_slot_code(AUDIO_TOKEN_END) is None
    for bad in (tk.PAD, tk.START_OF_SPEECH, -1, 0, AUDIO_TOKEN_BASE - 1):
        assert token_slot_code(bad) is None
    with pytest.raises(ValueError):
        audio_token_id(0, 4096)
    with pytest.raises(ValueError):
        audio_token_id(7, 0)
    with pytest.raises(ValueError):
        audio_token_id(0, -1)


@given(
    st.lists(
        st.sampled_from([tk.BOS, tk.EOT]) | st.integers(tk.CUSTOM_TOKEN_BASE, AUDIO_TOKEN_END - 1),
        max_size=20,
    )
)
def test_spelling_parses_back_to_the_same_custom_ids(ids: list[int]) -> None:
    text = spell_all(ids)
    custom = [i for i in ids if i >= tk.CUSTOM_TOKEN_BASE]
    parser = TokenTextParser()
    assert [i for i in parser.feed(text) + parser.close() if i >= 0] == custom


def test_llama_specials_and_unknown_ids() -> None:
    assert spell(tk.BOS) == "<|begin_of_text|>"
    assert spell(tk.EOT) == "<|eot_id|>"
    assert spell(tk.START_OF_HUMAN) == "<custom_token_3>"
    with pytest.raises(ValueError):
        spell(42)
