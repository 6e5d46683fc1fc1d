"""Does the time to first audio grow with the input? One sentence vs 4,000 characters.

The real gateway (``python -m app``, random-weight SNAC) against the paced backend of
bench/realtime_pacing.py (one token per SSE event at ``--rate`` tokens/s). Requests
alternate between a one-sentence input and a ~4,000-character input that starts with
the same sentence; each is read up to its first audio bytes (pcm), then closed. Prints
TTFA p50/p90 of each kind and the ratio of the medians, all from one run.

    python bench/long_input_ttfa.py --rounds 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import realtime_pacing as rp

FIRST = "The meeting moved to Thursday at 3:30 in the afternoon."
FILLER = (
    "Everyone should bring the quarterly figures, which rose by 12 percent to $4.2 million, "
    "and a short list of questions for Dr. Patel."
)


def long_input(chars: int = 4000) -> str:
    parts = [FIRST]
    while len(" ".join(parts)) + len(FILLER) < chars:
        parts.append(FILLER)
    return " ".join(parts)


async def ttfa(client: httpx.AsyncClient, url: str, text: str) -> float:
    body = {"model": "tts-1", "voice": "tara", "input": text, "response_format": "pcm"}
    started = time.perf_counter()
    async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        async for chunk in response.aiter_raw():
            if chunk:
                return time.perf_counter() - started
    raise RuntimeError("no audio")


async def run(url: str, rounds: int) -> dict[str, list[float]]:
    texts = {"short": FIRST, "long": long_input()}
    out: dict[str, list[float]] = {"short": [], "long": []}
    async with httpx.AsyncClient(timeout=60) as client:
        await ttfa(client, url, FIRST)  # warm-up
        for i in range(rounds):
            for kind in ("short", "long") if i % 2 else ("long", "short"):
                out[kind].append(await ttfa(client, url, texts[kind]))
                await asyncio.sleep(0.3)  # let the closed request's backend stream end
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    rp.add_rounds_options(parser)
    args = parser.parse_args()
    with rp.paced_gateway(args.rate, rp.random_snac(args.codec)) as gateway:
        results = asyncio.run(run(gateway.url, args.rounds))
    print(
        f"# {platform.node()} {os.cpu_count()} CPUs, codec {args.codec}, {args.rate:g} tokens/s, "
        f"long input {len(long_input())} characters, load {os.getloadavg()[0]:.2f}"
    )
    for kind, values in results.items():
        ms = sorted(v * 1000 for v in values)
        p90 = rp.pct(ms, 90)
        print(
            f"{kind:>5}: TTFA p50 {statistics.median(ms):6.0f} ms  p90 {p90:6.0f} ms  n={len(ms)}"
        )
    ratio = statistics.median(results["long"]) / statistics.median(results["short"])
    print(f"long / short median: {ratio:.3f}")


if __name__ == "__main__":
    main()
