"""How the WebSocket endpoints write a text (word by word, or at once) and where the client
says its first sentence ends: where the gateway's segmenter ends it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.text.incremental import SentenceBuffer
from app.text.sentences import split_sentences
from stress_test.corpus import builtin
from stress_test.exchange import RequestSpec
from stress_test.ws import deepgram_query, first_sentence_end, pieces, received_audio, ws_base

TRICKY = [
    "I met Dr. Smith today. Then we left.",
    "Call at 3 p.m. Then we go.",
    "It is 5 a.m. now. Yes.",
    "U.S. troops left. Yes.",
    "See e.g. this. Ok.",
    "1. First item. Second.",
    "J. K. Rowling wrote it. Yes.",
    'He said "stop." Then he left.',
    "It costs $12.50. Ok.",
    "Wait... what? Yes.",
    "Wait... What? Yes.",
    "Go now… Then stop.",
    "Apples, pears, etc. Then more.",
    "Apples, pears, etc. and more. Yes.",
    "Really?! Yes.",
    "Version 2.0 is out. Yes.",
    "Visit example.com. Then go.",
    "no end here at all",
]
CORPUS = [text.text for text in builtin()]


def client_first_sentence(text: str) -> str:
    sent = pieces(text, 40.0)
    end = first_sentence_end(sent)
    return "".join(sent[: end + 1] if end is not None else sent).strip()


@pytest.mark.parametrize("text", CORPUS + TRICKY)
def test_the_first_sentence_ends_where_the_gateway_would_end_it(text: str) -> None:
    assert client_first_sentence(text) == split_sentences(text)[0]


@pytest.mark.parametrize("pace", [40.0, 0.0])
@pytest.mark.parametrize("text", CORPUS)
def test_on_the_corpus_the_gateway_starts_speaking_at_that_message(text: str, pace: float) -> None:
    """Text arriving piece by piece: the gateway releases the first sentence on the message
    the client times it from, or (where only the next word tells it the sentence is over)
    on the next one, or at the end of the text; never before it."""
    buffer = SentenceBuffer(max_chars=200)
    sent = pieces(text, pace)
    released = next((i for i, piece in enumerate(sent) if buffer.append(piece)), None)
    end = first_sentence_end(sent)
    if end is None or released is None:
        assert released is None and end in (None, len(sent) - 1)
    else:
        assert released in (end, end + 1)


@given(st.lists(st.text(st.characters(blacklist_categories=["Z", "C"]), min_size=1), max_size=30))
def test_every_word_is_sent_once_in_order(words: list[str]) -> None:
    text = " ".join(words)
    paced = pieces(text, 40.0)
    assert [piece.strip() for piece in paced] == text.split()
    assert all(piece.endswith(" ") for piece in paced)
    (whole,) = pieces(text, 0.0)
    assert whole.split() == text.split()
    end = first_sentence_end(paced)
    assert end is None or 0 <= end < len(paced)


def test_deepgram_asks_for_linear16_at_24_khz_unless_told_otherwise() -> None:
    plain = RequestSpec(endpoint="deepgram")
    assert deepgram_query(plain, "tara") == {
        "model": "tara",
        "encoding": "linear16",
        "sample_rate": "24000",
    }
    assert received_audio(plain, 16_000) == ("pcm", 24_000)
    g711 = RequestSpec(endpoint="deepgram", extra={"encoding": "alaw", "speed": 1.5})
    assert deepgram_query(g711, "leo") == {
        "model": "leo",
        "encoding": "alaw",
        "sample_rate": "8000",
        "speed": "1.5",
    }
    assert received_audio(g711, 24_000) == ("alaw", 8_000)
    flags = RequestSpec(endpoint="deepgram", extra={"mip_opt_out": False, "sample_rate": 16000})
    assert deepgram_query(flags, "tara")["mip_opt_out"] == "false"
    assert received_audio(flags, 24_000) == ("pcm", 16_000)
    native = RequestSpec(endpoint="ws", response_format="mp3")
    assert received_audio(native, 24_000) == ("mp3", 24_000)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://gateway:8000", "ws://gateway:8000"),
        ("https://tts.example.com/", "wss://tts.example.com"),
    ],
)
def test_the_websocket_url_follows_the_gateways(url: str, expected: str) -> None:
    assert ws_base(url) == expected
