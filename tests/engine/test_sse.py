from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.engine.sse import SSEError, SSEParser


def parse(*chunks: bytes | str) -> list[str]:
    parser = SSEParser()
    events: list[str] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return events + parser.close()


def test_events_end_at_blank_lines() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\n\ndata: two\n") == ["one"]
    assert parser.feed(b"\n") == ["two"]
    assert parser.close() == []


def test_multi_line_data_is_joined_with_newlines() -> None:
    assert parse("data: a\ndata: b\ndata:\n\n") == ["a\nb\n"]


@pytest.mark.parametrize("eol", ["\n", "\r\n", "\r"])
def test_line_endings(eol: str) -> None:
    stream = f"data: a{eol}data: b{eol}{eol}data: c{eol}{eol}"
    assert parse(stream) == ["a\nb", "c"]


def test_comments_and_other_fields_are_ignored() -> None:
    stream = ": keep-alive\n\nevent: message\nid: 7\nretry: 10\ndata: x\n\n:\n\n"
    assert parse(stream) == ["x"]


def test_only_one_leading_space_is_removed() -> None:
    assert parse("data:x\n\ndata:  y\n\ndata\n\n") == ["x", " y", ""]


def test_field_names_are_case_sensitive() -> None:
    assert parse("Data: x\n\ndata: y\n\n") == ["y"]


def test_final_event_without_blank_line_is_flushed_by_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]") == []
    assert parser.close() == ["[DONE]"]
    assert parser.close() == []


def test_crlf_split_between_cr_and_lf_is_one_line_end() -> None:
    # A stray extra line end would dispatch "a" on its own.
    assert parse(b"data: a\r", b"\ndata: b\r\n\r\n") == ["a\nb"]


def test_utf8_split_inside_a_character() -> None:
    encoded = "data: héllo ✓\n\n".encode()
    cut = encoded.index("✓".encode()) + 1
    assert parse(encoded[:cut], encoded[cut:]) == ["héllo ✓"]


def test_byte_order_mark_is_skipped() -> None:
    assert parse(b"\xef\xbb", b"\xbfdata: x\n\n") == ["x"]


def test_line_without_end_is_bounded() -> None:
    parser = SSEParser(max_event_chars=1000)
    with pytest.raises(SSEError):
        for _ in range(20):
            parser.feed(b"data: " + b"x" * 100)


def test_event_size_is_bounded() -> None:
    parser = SSEParser(max_event_chars=1000)
    with pytest.raises(SSEError):
        parser.feed(b"data: " + b"x" * 600 + b"\ndata: " + b"y" * 600 + b"\n")


def test_feed_after_close_is_an_error() -> None:
    parser = SSEParser()
    parser.close()
    with pytest.raises(SSEError):
        parser.feed(b"data: x\n\n")


_line_text = st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20)


@st.composite
def streams(draw: st.DrawFn) -> tuple[str, list[str]]:
    """A valid event stream (one line-end style, comments sprinkled in) and its events."""
    eol = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    events = draw(st.lists(st.lists(_line_text, min_size=1, max_size=4), max_size=6))
    parts: list[str] = []
    for lines in events:
        if draw(st.booleans()):
            parts.append(":" + draw(_line_text) + eol)
        parts.extend("data: " + line + eol for line in lines)
        parts.append(eol)
    if events and draw(st.booleans()):
        parts.pop()  # the last event may lack its blank line: close() delivers it
    return "".join(parts), ["\n".join(lines) for lines in events]


@given(streams(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_of_the_bytes_gives_the_same_events(
    stream: tuple[str, list[str]], cuts: list[int]
) -> None:
    text, expected = stream
    data = text.encode()
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    chunks = [data[a:b] for a, b in itertools.pairwise(points)]
    assert parse(data) == expected
    assert parse(*chunks) == expected


@given(streams(), st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
def test_any_split_of_the_text_gives_the_same_events(
    stream: tuple[str, list[str]], cuts: list[int]
) -> None:
    text, expected = stream
    points = sorted({0, len(text), *(c % (len(text) + 1) for c in cuts)})
    assert parse(*[text[a:b] for a, b in itertools.pairwise(points)]) == expected
