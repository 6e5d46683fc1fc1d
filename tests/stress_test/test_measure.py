"""From bytes and arrival times to what a listener got: audio seconds, first audio, stalls."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stress_test.corpus import Text
from stress_test.exchange import Exchange
from stress_test.measure import (
    PcmTrack,
    _availability,
    audio_track,
    container_track,
    measure,
    play,
)
from tests.support.clips import chirp, encode_clip

RATE = 24_000


def exchange(chunks: list[tuple[float, bytes]], ended: float | None = None) -> Exchange:
    ex = Exchange(Text("short", "Hi."), "tara", started=0.0, status=200)
    for at, data in chunks:
        ex.audio.extend(data)
        ex.arrivals.append((at, len(ex.audio)))
    ex.ended = ended if ended is not None else (chunks[-1][0] if chunks else 0.0)
    return ex


def test_pcm_audio_seconds_come_from_the_byte_count() -> None:
    second = bytes(2 * RATE)
    result = measure(
        exchange([(0.2, second), (0.7, second)], ended=1.5),
        index=0,
        phase="measure",
        run_started=0.0,
        response_format="pcm",
    )
    assert result.ok
    assert result.ttfa == 0.2
    assert result.audio_seconds == 2.0
    assert result.rtf == pytest.approx(0.75)
    assert result.timeline == [(0.2, 1.0), (0.7, 2.0)]
    assert result.stall_count == 0 and result.largest_gap == pytest.approx(0.5)


def test_a_wav_header_alone_is_not_first_audio() -> None:
    data = encode_clip(chirp(1.0, RATE), RATE, "wav")
    header = data.index(b"data") + 8
    result = measure(
        exchange([(0.1, data[:header]), (0.4, data[header:])]),
        index=0,
        phase="measure",
        run_started=0.0,
        response_format="wav",
    )
    assert result.ttfa == 0.4
    assert result.audio_seconds == pytest.approx(1.0)


def test_a_late_chunk_is_a_stall_of_the_time_the_player_waited() -> None:
    # 0.5 s of audio at 0.1 s, the next at 1.0 s: the player ran dry at 0.6 s.
    half = bytes(RATE)
    result = measure(
        exchange([(0.1, half), (1.0, half), (1.2, half)]),
        index=0,
        phase="measure",
        run_started=0.0,
        response_format="pcm",
        stall_threshold=0.01,
    )
    assert result.stall_count == 1
    assert result.stall_seconds == pytest.approx(0.4)
    assert result.stalls == [pytest.approx((0.6, 1.0))]


def test_waits_under_the_threshold_are_not_counted() -> None:
    half = bytes(RATE)
    result = measure(
        exchange([(0.1, half), (0.605, half)]),
        index=0,
        phase="measure",
        run_started=0.0,
        response_format="pcm",
        stall_threshold=0.01,
    )
    assert len(result.stalls) == 1 and result.stall_count == 0 and result.stall_seconds == 0


def test_a_response_without_audio_is_a_failure() -> None:
    result = measure(exchange([]), index=0, phase="measure", run_started=0.0, response_format="pcm")
    assert result.cause == "no_audio"
    garbage = measure(
        exchange([(0.1, b"not audio at all" * 10)]),
        index=0,
        phase="measure",
        run_started=0.0,
        response_format="mp3",
    )
    assert garbage.cause in ("undecodable_audio", "no_audio")


@pytest.mark.parametrize("fmt", ["wav", "flac", "mp3", "ogg", "m4a"])
def test_containers_decode_to_their_duration(fmt: str) -> None:
    data = encode_clip(chirp(2.0, RATE), RATE, fmt)
    track = container_track(data)
    # Lossy codecs add priming and padding samples; lossless ones are exact.
    tolerance = 0.0 if fmt in ("wav", "flac") else 0.1
    assert track.samples / track.rate == pytest.approx(2.0, abs=tolerance + 1e-9)
    assert track.samples_at(0) == 0
    assert track.samples_at(len(data)) == track.samples


def test_availability_of_contiguous_packets_and_of_ogg_pages() -> None:
    contiguous = [(44, 100, 10), (144, 100, 10), (244, 100, 10)]
    assert _availability(contiguous, 344) == ([144, 244, 344], [0, 10, 20, 30])
    # Ogg: packets of one page share its position; they are there once the page is.
    pages = [(50, 30, 5), (50, 30, 5), (120, 30, 5), (None, 0, 7)]
    offsets, cumulative = _availability(pages, 200)
    assert offsets == [120, 120, 200, 200]
    assert cumulative == [0, 5, 10, 15, 22]


def test_pcm_track_counts_whole_samples() -> None:
    track = audio_track(bytes(9), "pcm", RATE)
    assert isinstance(track, PcmTrack)
    assert [track.samples_at(n) for n in (0, 1, 2, 9, 100)] == [0, 0, 1, 4, 4]


@pytest.mark.parametrize("fmt", ["mulaw", "alaw"])
def test_g711_counts_a_sample_a_byte(fmt: str) -> None:
    result = measure(
        exchange([(0.3, bytes(4000)), (0.5, bytes(4000))]),
        index=0,
        phase="measure",
        run_started=0.0,
        response_format=fmt,
        pcm_rate=8000,
    )
    assert result.audio_seconds == 1.0 and result.timeline == [(0.3, 0.5), (0.5, 1.0)]


def test_the_first_sentence_is_timed_from_the_message_that_completed_it() -> None:
    ex = exchange([(0.2, bytes(2 * RATE))])
    ex.sentence_sent, ex.close_code = 0.05, 1000
    result = measure(ex, index=0, phase="measure", run_started=0.0, response_format="pcm")
    assert result.sentence_ttfa == pytest.approx(0.15) and result.close_code == 1000
    http = measure(
        exchange([(0.2, bytes(2))]), index=0, phase="m", run_started=0.0, response_format="pcm"
    )
    assert http.sentence_ttfa is None and http.close_code is None


@given(st.lists(st.tuples(st.floats(0.0, 2.0), st.floats(0.001, 1.0)), min_size=1, max_size=30))
def test_player_waits_exactly_as_long_as_the_worst_deficit(
    steps: list[tuple[float, float]],
) -> None:
    """Total stall = max(0, max_i(t_i - t_0 - audio before i)); the player never plays
    audio that has not arrived."""
    timeline, t, audio = [], 0.0, 0.0
    for gap, seconds in steps:
        t, audio = t + gap, audio + seconds
        timeline.append((t, audio))
    playback = play(timeline)
    start = timeline[0][0]
    deficits = [b[0] - start - a[1] for a, b in itertools.pairwise(timeline)]
    expected = max([0.0, *deficits])
    total = sum(end - begin for begin, end in playback.stalls)
    assert math.isclose(total, expected, rel_tol=1e-9, abs_tol=1e-9)
    assert all(end > begin for begin, end in playback.stalls)
    starts = [begin for begin, _ in playback.stalls]
    assert starts == sorted(set(starts))
