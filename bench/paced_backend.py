"""A vLLM-compatible completions server that streams Orpheus audio tokens at a fixed pace.

At capacity vLLM gives each stream about real-time pace (82 tokens/s: 7 tokens per
2048-sample frame at 24 kHz), one token per SSE event; this server does the same for every
request, on a fixed schedule (no drift), with vLLM's wire format (it is the test suite's
scriptable server, tests/support/vllm_server.py). Every request gets `--seconds` of audio.

    python bench/paced_backend.py --rate 82 --seconds 6 --port 8001
    TTS_API=http://127.0.0.1:8001 MODEL_NAME=tinyorpheus python -m app

`--check 8,16,32` instead reads that many streams at once straight from the backend and
prints the pace each got: on a busy machine the backend itself may fall behind, and then a
gateway sweep measures the machine rather than the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import signal
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.vllm_server import Script, VLLMServer

FRAME_SECONDS = 2048 / 24_000


def frames_for(seconds: float) -> int:
    return max(1, math.ceil(seconds / FRAME_SECONDS))


def paced_backend(rate: float, seconds: float, port: int = 0) -> VLLMServer:
    """A started server whose every stream carries `seconds` of audio at `rate` tokens/s."""
    frames = frames_for(seconds)
    server = VLLMServer(frames=frames, max_model_len=1_000_000)

    def script(body: dict[str, Any]) -> Script:
        return Script(frames=frames, pace=rate)

    server.default_script = script
    return server.start(port=port)


async def _read(url: str, model: str) -> tuple[int, float, float]:
    """(tokens, seconds from the first token to the last, seconds to the first token)."""
    body = {"model": model, "prompt": "tara: pace check", "stream": True, "max_tokens": 100_000}
    tokens, first, last = 0, 0.0, 0.0
    started = time.perf_counter()
    async with (
        httpx.AsyncClient(timeout=120) as client,
        client.stream("POST", f"{url}/v1/completions", json=body) as response,
    ):
        async for line in response.aiter_lines():
            if line.startswith("data: {"):
                tokens += 1
                last = time.perf_counter() - started
                first = first or last
    return tokens, last - first, first


async def check(server: VLLMServer, streams: int) -> str:
    results = await asyncio.gather(*(_read(server.url, server.model) for _ in range(streams)))
    paces = sorted((n - 1) / span for n, span, _ in results if span > 0)
    firsts = sorted(first for _, _, first in results)
    return (
        f"{streams} streams: pace min {paces[0]:.1f}, median {statistics.median(paces):.1f} "
        f"tokens/s per stream; first token max {firsts[-1] * 1000:.0f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=82.0, help="tokens per second per stream")
    parser.add_argument("--seconds", type=float, default=6.0, help="audio per request")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--check", help="comma-separated stream counts to read at once, then exit")
    args = parser.parse_args()
    server = paced_backend(args.rate, args.seconds, 0 if args.check else args.port)
    if args.check:
        print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        for streams in (int(n) for n in args.check.split(",")):
            print(asyncio.run(check(server, streams)), flush=True)
        server.stop()
        return 0
    print(f"paced backend on {server.url}: {args.rate:g} tokens/s, {args.seconds:g} s each")
    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
