"""When the consumer of a completions stream is woken: at each frame, counted from the start."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from app.engine.completion_events import CompletionEvents
from app.vocab import AUDIO_TOKEN_BASE, CUSTOM_TOKEN_BASE, END_OF_SPEECH


def token(n: int) -> str:
    text = f"<custom_token_{AUDIO_TOKEN_BASE - CUSTOM_TOKEN_BASE + n}>"
    return json.dumps({"choices": [{"index": 0, "text": text, "finish_reason": None}]})


def events() -> CompletionEvents:
    return CompletionEvents("m", frozenset({END_OF_SPEECH}), wake_tokens=7)


def test_a_frame_completed_after_an_uneven_take_wakes_the_consumer() -> None:
    sink = events()
    assert not any(sink.feed([token(n)]) for n in range(6))
    assert sink.feed([token(6)])  # the first frame is whole
    sink.feed([token(7)])  # one more came before the consumer ran
    assert len(sink.take()) == 8
    # Six more complete the second frame: wake now, not one token (or a pause) later.
    assert sink.wanted == 6
    assert not any(sink.feed([token(n)]) for n in range(8, 13))
    assert sink.wanted == 1
    assert sink.feed([token(13)])
    assert len(sink.take()) == 6 and sink.wanted == 7


@given(st.lists(st.integers(min_value=1, max_value=9), min_size=1, max_size=30), st.data())
def test_the_consumer_is_woken_exactly_when_a_multiple_of_seven_is_reached(
    reads: list[int], data: st.DataObject
) -> None:
    sink = events()
    received = taken = 0
    for size in reads:
        woke = sink.feed([token(received + k) for k in range(size)])
        received += size
        assert woke == (received // 7 > taken // 7)
        assert sink.wanted == 7 - received % 7
        if woke and data.draw(st.booleans()):
            taken += len(sink.take())
            assert taken == received
