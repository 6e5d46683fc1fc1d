"""Hypothesis strategies for text the front-end must survive: prose with the hard parts."""

from __future__ import annotations

from hypothesis import strategies as st

from app.text.tags import EMOTION_TAGS

TAGS = [f"<{name}>" for name in EMOTION_TAGS]
HARD_TOKENS = [
    "Dr.",
    "e.g.",
    "U.S.",
    "3.14",
    "J.",
    "...",
    "—",
    "-",
    ",",
    ";",
    ":",
    ".",
    "!",
    "?",
    '"',
    "1.",
    "(a)",
    "https://example.com/a.b",
    "jane@example.com",
    "$5.20",
    "10:30",
    "40–60",
    "#",
    "**",
    "<|eot_id|>",
    "<custom_token_3>",
    "😀",
]

words = st.from_regex(r"[A-Za-z][a-z']{0,11}[.,;:!?]?", fullmatch=True)
tokens = st.one_of(words, words, words, st.sampled_from(TAGS), st.sampled_from(HARD_TOKENS))
separators = st.sampled_from([" ", " ", " ", "  ", "\n", "\n\n", "\t"])


@st.composite
def prose(draw: st.DrawFn, max_tokens: int = 120) -> str:
    """Words, tags and hard tokens joined by mixed whitespace."""
    parts = draw(st.lists(tokens, max_size=max_tokens))
    text = ""
    for part in parts:
        text += part + draw(separators)
    return text


any_text = st.one_of(prose(), st.text(max_size=300))
