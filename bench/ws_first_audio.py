"""Time from the first complete sentence to its first audio: WebSocket sessions vs HTTP.

The real gateway (``python -m app``, random-weight SNAC) against the paced backend of
bench/realtime_pacing.py (one token per SSE event at ``--rate`` tokens/s). One reply of
several sentences is spoken in rounds, the kinds alternating:

- ``http``: ``POST /v1/audio/speech`` with the whole reply (pcm): request to first byte;
- ``native``: ``/v1/audio/speech/stream``, the reply sent word by word as an LLM writes it
  (``--words-per-second``), from the moment the first sentence's last word is sent to the
  first audio frame;
- ``deepgram``: the same over ``/v1/speak`` (one ``Speak`` per word, as LiveKit sends).

Session set-up (handshake, ``session.update``) is not timed; each kind reads up to its first
audio, then closes. Prints p50/p90 of each kind and the ratios of the medians, one run, and
the first audio counted from the LLM's first word: for the sessions measured, for HTTP the
time to write the whole reply at that pace (it must exist before the request) plus its TTFA.

    python bench/ws_first_audio.py --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx
from websockets.asyncio.client import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import long_input_ttfa as lt
import realtime_pacing as rp

FIRST = lt.FIRST
REPLY = (
    f"{FIRST} Everyone should bring the quarterly figures, which rose by 12 percent. "
    "Please send your questions to Dr. Patel before Wednesday. Lunch will be provided."
)


WORDS = [f"{w} " for w in REPLY.split()]
Timing = tuple[float, float]
"""Seconds to the first audio from the first sentence's completion, and from the first word."""


async def stream_first_audio(
    ws: ClientConnection, message: dict[str, str], key: str, words_per_second: float
) -> Timing:
    """Send REPLY word by word in ``message`` (its ``key`` the text), as an LLM writes it."""
    words = WORDS
    last_of_first = len(FIRST.split()) - 1
    complete_at: list[float] = []
    started = time.perf_counter()

    async def write() -> None:
        for i, word in enumerate(words):
            await ws.send(json.dumps(message | {key: word}))
            if i == last_of_first:
                complete_at.append(time.perf_counter())
            if words_per_second:
                await asyncio.sleep(1 / words_per_second)

    writer = asyncio.create_task(write())
    try:
        async for received in ws:
            if isinstance(received, bytes):
                now = time.perf_counter()
                return now - complete_at[0], now - started
    finally:
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
    raise RuntimeError("no audio")


async def native_first_audio(url: str, words_per_second: float) -> Timing:
    ws_url = url.replace("http://", "ws://") + "/v1/audio/speech/stream"
    async with connect(ws_url) as ws:
        await ws.send(json.dumps({"type": "session.update", "voice": "tara"}))
        assert json.loads(await ws.recv())["type"] == "session.ready"
        message = {"type": "input_text.append"}
        return await stream_first_audio(ws, message, "text", words_per_second)


async def deepgram_first_audio(url: str, words_per_second: float) -> Timing:
    ws_url = url.replace("http://", "ws://") + "/v1/speak?model=aura-2-helena-en"
    async with connect(ws_url) as ws:
        assert json.loads(await ws.recv())["type"] == "Metadata"
        return await stream_first_audio(ws, {"type": "Speak"}, "text", words_per_second)


async def run(url: str, rounds: int, words_per_second: float) -> dict[str, list[Timing]]:
    out: dict[str, list[Timing]] = {"http": [], "native": [], "deepgram": []}
    writing = len(WORDS) / words_per_second if words_per_second else 0.0
    async with httpx.AsyncClient(timeout=60) as client:

        async def once(kind: str) -> Timing:
            if kind == "http":
                ttfa = await lt.ttfa(client, url, REPLY)
                return ttfa, writing + ttfa
            if kind == "native":
                return await native_first_audio(url, words_per_second)
            return await deepgram_first_audio(url, words_per_second)

        for kind in out:  # warm-up
            await once(kind)
        kinds = list(out)
        for i in range(rounds):
            for kind in kinds[i % 3 :] + kinds[: i % 3]:
                out[kind].append(await once(kind))
                await asyncio.sleep(0.3)  # let the closed request's backend stream end
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    rp.add_rounds_options(parser)
    parser.add_argument("--words-per-second", type=float, default=40.0)
    args = parser.parse_args()
    with rp.paced_gateway(args.rate, rp.random_snac(args.codec)) as gateway:
        results = asyncio.run(run(gateway.url, args.rounds, args.words_per_second))
    print(
        f"# {platform.node()} {os.cpu_count()} CPUs, codec {args.codec}, {args.rate:g} tokens/s, "
        f"{args.words_per_second:g} words/s, load {os.getloadavg()[0]:.2f}"
    )
    medians: dict[str, list[float]] = {}
    for kind, values in results.items():
        row = f"{kind:>8}:"
        for column, label in ((0, "after the sentence"), (1, "after the first word")):
            ms = sorted(v[column] * 1000 for v in values)
            p90 = rp.pct(ms, 90)
            medians.setdefault(kind, []).append(statistics.median(ms))
            row += f"  {label}: p50 {medians[kind][-1]:6.0f} ms p90 {p90:6.0f} ms"
        print(f"{row}  n={len(values)}")
    for kind in ("native", "deepgram"):
        ratios = [m / h for m, h in zip(medians[kind], medians["http"], strict=True)]
        print(f"{kind} / http median: {ratios[0]:.3f} after the sentence, "
              f"{ratios[1]:.3f} after the first word")  # fmt: skip


if __name__ == "__main__":
    main()
