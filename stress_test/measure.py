"""What a listener got from one request: first audio, audio seconds, RTF and stalls.

Audio seconds come from the audio itself: a byte count for raw PCM, PyAV's decode of the
received bytes otherwise (never a header's claim). Each packet counts as playable once its
last byte arrived, so a container header or an Ogg page still in flight is not "audio yet".
The stall model is a player that starts at the first audio and plays without a buffer:
whenever it has played everything received so far it waits, and that wait is a stall.
"""

from __future__ import annotations

import bisect
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import av

from stress_test.exchange import Exchange

RAW_SAMPLE_BYTES = {"pcm": 2, "mulaw": 1, "alaw": 1}
"""Bare mono audio: `pcm` (and Deepgram's linear16) is signed 16-bit little-endian, G.711
one byte a sample."""


class UndecodableAudio(Exception):
    pass


class AudioTrack(Protocol):
    """How many samples the first `received` bytes of a response make playable."""

    @property
    def rate(self) -> int: ...

    @property
    def samples(self) -> int: ...

    def samples_at(self, received: int) -> int: ...


@dataclass(frozen=True)
class PcmTrack:
    rate: int
    samples: int
    sample_bytes: int = 2

    def samples_at(self, received: int) -> int:
        return min(received // self.sample_bytes, self.samples)


@dataclass(frozen=True)
class PacketTrack:
    rate: int
    offsets: list[int]
    """Byte offset by which each packet (in order) has fully arrived."""
    cumulative: list[int]
    """Samples of the packets before index i (cumulative[0] == 0)."""

    @property
    def samples(self) -> int:
        return self.cumulative[-1]

    def samples_at(self, received: int) -> int:
        return self.cumulative[bisect.bisect_right(self.offsets, received)]


def container_track(data: bytes) -> PacketTrack:
    """Decode `data` with PyAV; a truncated tail keeps what decoded before it."""
    packets: list[tuple[int | None, int, int]] = []
    rate = 0
    try:
        with av.open(io.BytesIO(data)) as container:
            if not container.streams.audio:
                raise UndecodableAudio("no audio stream in the response")
            stream = container.streams.audio[0]
            rate = stream.rate or 0
            try:
                for packet in container.demux(stream):
                    frames = packet.decode()
                    samples = sum(frame.samples for frame in frames)
                    if frames:
                        rate = frames[0].sample_rate
                    if packet.size or samples:
                        packets.append((packet.pos if packet.size else None, packet.size, samples))
            except av.FFmpegError:
                pass  # a cut-off stream: the audio before the cut still counts
    except av.FFmpegError as exc:
        raise UndecodableAudio(f"{type(exc).__name__}: {exc}") from exc
    if rate <= 0:
        raise UndecodableAudio("the audio stream has no sample rate")
    return PacketTrack(rate, *_availability(packets, len(data)))


def _availability(
    packets: Sequence[tuple[int | None, int, int]], total: int
) -> tuple[list[int], list[int]]:
    """Per packet, the offset by which it has arrived: the start of the next packet that
    starts later (Ogg gives all packets of a page the page's position), else the end."""
    offsets = [total] * len(packets)
    boundary, group = total, None
    for index in range(len(packets) - 1, -1, -1):
        pos, size, _ = packets[index]
        if pos is not None:
            if group is not None and pos < group:
                boundary = group
            group = pos if group is None else min(group, pos)
            offsets[index] = min(total, max(boundary, pos + size))
        else:
            offsets[index] = boundary
    # A packet is only playable after the ones before it.
    for index in range(1, len(offsets)):
        offsets[index] = max(offsets[index], offsets[index - 1])
    cumulative = [0]
    for _, _, samples in packets:
        cumulative.append(cumulative[-1] + samples)
    return offsets, cumulative


def audio_track(data: bytes, response_format: str, pcm_rate: int) -> AudioTrack:
    width = RAW_SAMPLE_BYTES.get(response_format)
    if width is not None:
        return PcmTrack(pcm_rate, len(data) // width, width)
    return container_track(data)


@dataclass(frozen=True)
class Playback:
    stalls: list[tuple[float, float]]
    """(start, end) of each wait of the player, seconds since the request was sent."""


def play(timeline: list[tuple[float, float]]) -> Playback:
    """Replay `timeline` ((arrival time, audio seconds received so far), increasing) through a
    player that starts at the first audio."""
    if not timeline:
        return Playback([])
    start, played = timeline[0]
    shift = 0.0
    stalls: list[tuple[float, float]] = []
    for arrived, audio in timeline[1:]:
        runs_dry = start + shift + played
        if arrived > runs_dry:
            stalls.append((runs_dry, arrived))
            shift += arrived - runs_dry
        played = audio
    return Playback(stalls)


@dataclass
class RequestResult:
    """One request's figures, as reported and saved (times in seconds)."""

    index: int
    phase: str
    """warmup, measure, or the sweep level (c=N)."""
    text_kind: str
    chars: int
    voice: str
    sent_at: float
    """Seconds since the run started."""
    status: int | None
    cause: str | None
    message: str | None
    in_band: bool
    latency: float
    ttfa: float | None = None
    audio_seconds: float = 0.0
    rtf: float | None = None
    stall_seconds: float = 0.0
    """Total of the player's waits of at least the stall threshold."""
    stall_count: int = 0
    largest_gap: float | None = None
    sentence_ttfa: float | None = None
    """WebSocket: from sending the message that completed the first sentence to the first
    audio (negative: the gateway began speaking before that message)."""
    close_code: int | None = None
    """WebSocket: the gateway's close code."""
    bytes: int = 0
    timeline: list[tuple[float, float]] = field(default_factory=list)
    stalls: list[tuple[float, float]] = field(default_factory=list)
    """(start, end) of every wait of the player, even those under the stall threshold."""

    @property
    def ok(self) -> bool:
        return self.cause is None


def measure(
    exchange: Exchange,
    *,
    index: int,
    phase: str,
    run_started: float,
    response_format: str,
    pcm_rate: int = 24_000,
    stall_threshold: float = 0.0,
) -> RequestResult:
    """`stall_threshold`: waits shorter than this (seconds) are not counted as stalls."""
    result = RequestResult(
        index=index,
        phase=phase,
        text_kind=exchange.text.kind,
        chars=len(exchange.text.text),
        voice=exchange.voice,
        sent_at=exchange.started - run_started,
        status=exchange.status,
        cause=exchange.cause,
        message=exchange.message,
        in_band=exchange.in_band,
        close_code=exchange.close_code,
        latency=exchange.ended,
        bytes=len(exchange.audio),
    )
    if not exchange.audio:
        if result.ok:
            result.cause, result.message = "no_audio", "the response carried no audio"
        return result
    try:
        track = audio_track(bytes(exchange.audio), response_format, pcm_rate)
    except UndecodableAudio as exc:
        if result.ok:
            result.cause, result.message = "undecodable_audio", str(exc)
        return result
    timeline: list[tuple[float, float]] = []
    for arrived, received in exchange.arrivals:
        audio = track.samples_at(received) / track.rate
        if audio > (timeline[-1][1] if timeline else 0.0):
            timeline.append((arrived, audio))
    # Samples only the decoder's flush produces become playable when the body is complete.
    if track.samples / track.rate > (timeline[-1][1] if timeline else 0.0):
        timeline.append((exchange.arrivals[-1][0], track.samples / track.rate))
    playback = play(timeline)
    result.timeline = timeline
    result.stalls = playback.stalls
    counted = [end - start for start, end in playback.stalls if end - start >= stall_threshold]
    result.stall_seconds = sum(counted)
    result.stall_count = len(counted)
    result.audio_seconds = track.samples / track.rate
    if timeline:
        result.ttfa = timeline[0][0]
        gaps = [b[0] - a[0] for a, b in itertools.pairwise(timeline)]
        result.largest_gap = max(gaps, default=0.0)
        if exchange.sentence_sent is not None:
            result.sentence_ttfa = result.ttfa - exchange.sentence_sent
    if result.audio_seconds > 0:
        result.rtf = result.latency / result.audio_seconds
    elif result.ok:
        result.cause, result.message = "no_audio", "the response decoded to no samples"
    return result
