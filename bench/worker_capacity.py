"""How many real-time streams does the gateway sustain with WORKERS=1 and WORKERS=2?

The gateway runs as `python -m app` (TORCH_THREADS=1, real-size random-weight SNAC 24 kHz
on the CPU, so decoding costs what the real codec costs), fed by the scriptable
vLLM-compatible test server in a process of its own, paced at 82 tokens/s per stream
(about real time, what vLLM gives each stream at capacity). For each concurrency level
N, N streams of `--frames` frames start together (PCM, streamed) and each records its
time to first audio and its lag: wall time minus audio duration. With a paced backend even
one stream lags (its TTFA plus the pacing's own overhead): that is the baseline, measured
with N=1. Capacity is the largest N whose p95 lag stays within `--max-lag` seconds of the
baseline, with no failures: the gateway still delivers as fast as the backend generates.

    python bench/worker_capacity.py [--workers 1 2] [--levels 2 4 6 8 12 16] [--frames 48]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.audio.pcm import SAMPLE_RATE
from app.demo.random_snac import write_random_snac
from tests.support.gateway_process import GatewayProcess, backend_env, free_port

TOKENS_PER_SECOND = 82.0
BYTES_PER_SECOND = SAMPLE_RATE * 2  # pcm s16le mono


def serve_backend(port: int, frames: int) -> None:
    """The paced backend (run in its own process by the benchmark)."""
    from tests.support.vllm_server import Script, VLLMServer

    server = VLLMServer(frames=frames, port=port)
    server.default_script = lambda body: Script(frames=frames, delay=1 / TOKENS_PER_SECOND)
    server.start()
    print("backend ready", flush=True)
    while True:
        time.sleep(3600)


async def one_stream(client: httpx.AsyncClient, url: str, seed: int) -> tuple[float, float]:
    """(seconds to first audio, lag = wall time - audio seconds)."""
    body = {"model": "tts-1", "voice": "tara", "input": "Hello there, this is a test.",
            "response_format": "pcm", "seed": seed}  # fmt: skip
    started = time.perf_counter()
    first = None
    size = 0
    async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        response.raise_for_status()
        async for chunk in response.aiter_bytes():
            if first is None and chunk:
                first = time.perf_counter() - started
            size += len(chunk)
    wall = time.perf_counter() - started
    return first or wall, wall - size / BYTES_PER_SECOND


async def level(url: str, streams: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        started = time.perf_counter()
        results = await asyncio.gather(
            *(one_stream(client, url, seed) for seed in range(streams)), return_exceptions=True
        )
        wall = time.perf_counter() - started
    ok = [r for r in results if isinstance(r, tuple)]
    lags = sorted(lag for _, lag in ok)
    ttfas = sorted(t for t, _ in ok)

    def p95(values: list[float]) -> float:
        return values[min(len(values) - 1, round(0.95 * (len(values) - 1)))] if values else 0.0

    return {
        "streams": streams,
        "failed": len(results) - len(ok),
        "ttfa_p50": statistics.median(ttfas) if ttfas else 0.0,
        "ttfa_p95": p95(ttfas),
        "lag_p50": statistics.median(lags) if lags else 0.0,
        "lag_p95": p95(lags),
        "wall": wall,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--levels", type=int, nargs="+", default=[2, 3, 4, 6, 8, 12])
    parser.add_argument("--frames", type=int, default=48)
    parser.add_argument("--max-lag", type=float, default=1.0)
    parser.add_argument("--serve-backend", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_backend:
        serve_backend(args.serve_backend, args.frames)
        return 0
    tmp = Path(tempfile.mkdtemp(prefix="bench-workers-"))
    snac = write_random_snac(tmp / "snac", tiny=False, seed=0)
    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, __file__, "--serve-backend", str(port), "--frames", str(args.frames)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert backend.stdout is not None and "ready" in backend.stdout.readline()
    audio = args.frames * 2048 / SAMPLE_RATE
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
    print(f"backend: paced {TOKENS_PER_SECOND:g} tokens/s per stream, {args.frames} frames "
          f"({audio:.2f} s audio) per stream; SNAC real size, CPU, TORCH_THREADS=1")  # fmt: skip
    try:
        for workers in args.workers:
            env = backend_env(f"http://127.0.0.1:{port}", snac, tmp / f"data-{workers}",
                              WORKERS=str(workers), FIRST_TOKEN_TIMEOUT="60",
                              INTER_TOKEN_TIMEOUT="30", LOG_LEVEL="warning")  # fmt: skip
            with GatewayProcess(env, tmp / f"gateway-{workers}.log") as gateway:
                asyncio.run(level(gateway.url, 1))  # warm-up
                capacity = 0
                print(f"\nWORKERS={workers}")
                print("streams failed ttfa_p50 ttfa_p95 lag_p50 lag_p95 audio_s/s")
                baseline = None
                for streams in [1, *args.levels]:
                    r = asyncio.run(level(gateway.url, streams))
                    rate = (streams - r["failed"]) * audio / r["wall"]
                    print(f"{streams:7d} {r['failed']:6.0f} {r['ttfa_p50']:8.2f} "
                          f"{r['ttfa_p95']:8.2f} {r['lag_p50']:7.2f} {r['lag_p95']:7.2f} "
                          f"{rate:9.2f}")  # fmt: skip
                    baseline = r["lag_p95"] if baseline is None else baseline
                    if r["failed"] == 0 and r["lag_p95"] <= baseline + args.max_lag:
                        capacity = streams
                    else:
                        break
                print(f"capacity WORKERS={workers}: {capacity} streams keeping up "
                      f"(p95 lag within {args.max_lag:g} s of one stream's "
                      f"{baseline or 0:.2f} s)")  # fmt: skip
    finally:
        backend.kill()
        backend.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
