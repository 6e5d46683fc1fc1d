"""Do live streams run dry while a cloning reference is encoded?

The codec worker encodes a reference a slice at a time between the live streams'
windows; a window that arrives while a slice runs waits for it. This bench runs the
real gateway (``python -m app``, a random-weight SNAC) against the paced backend of
`bench/realtime_pacing.py`, starts ``--streams`` pcm streams of ``--frames`` frames,
and ``--after`` seconds later saves a ``--reference-seconds`` voice
(``POST /v1/audio/voices``, a WAV of noise). Per round it prints, over the streams:
- stall: seconds a player that starts at the first byte waits with an empty buffer
  (total per stream: mean and worst)
- stalled: streams with any wait over 1 ms
- lowest lead: the least audio any player still held when a chunk arrived, after its
  first second (negative: it had run dry that long); how close the streams came
- save: seconds the upload took (decode, encode, store)

    python bench/cloning_under_load.py --rounds 3
    python bench/cloning_under_load.py --gateway-root ../before --rounds 4
    python bench/cloning_under_load.py --codec real --streams 1 --frames 240

Each round starts a fresh gateway (its first encode is then a cold process's); with
``--gateway-root`` the variants take turns, the order reversed every other round, and the
run ends with each variant's mean worst stall and lowest lead.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realtime_pacing import (
    ROOT,
    SAMPLE_RATE,
    Gateway,
    add_gateway_root_option,
    alternating,
    paced_backend,
    random_snac,
    running_gateway,
    variant_name,
)


def reference_wav(seconds: float, seed: int = 11) -> bytes:
    """Noise with a slow envelope, 16-bit mono WAV at 24 kHz: speech-like enough that no
    silence is trimmed."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    envelope = 0.1 + 0.3 * np.abs(np.sin(np.arange(n) / 5000.0))
    pcm = np.clip(rng.standard_normal(n) * envelope, -1, 1)
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes((pcm * 32767).astype("<i2").tobytes())
    return out.getvalue()


async def save_voice(client: httpx.AsyncClient, url: str, clip: bytes, name: str) -> float:
    started = time.perf_counter()
    response = await client.post(
        f"{url}/v1/audio/voices",
        data={"name": name, "reference_text": "A long reference."},
        files={"reference_audio": ("ref.wav", clip, "audio/wav")},
    )
    if response.status_code != 201:
        raise RuntimeError(f"saving the voice failed: {response.status_code} {response.text}")
    return time.perf_counter() - started


async def pcm_stream(client: httpx.AsyncClient, url: str, seed: int) -> tuple[float, float]:
    """One pcm stream: (seconds its player waited in all, the lowest lead after 1 s)."""
    body = {"model": "tts-1", "voice": "tara", "input": f"Live {seed}.", "response_format": "pcm"}
    stall, lowest = 0.0, float("inf")
    started = play_end = 0.0
    async with client.stream("POST", f"{url}/v1/audio/speech", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"a live stream failed: HTTP {response.status_code}")
        async for data in response.aiter_raw():
            now = time.perf_counter()
            seconds = len(data) / (2 * SAMPLE_RATE)
            if not started:
                started, play_end = now, now + seconds
                continue
            if now - started > 1.0:
                lowest = min(lowest, play_end - now)
            stall += max(0.0, now - play_end)
            play_end = max(play_end, now) + seconds
    return stall, lowest


async def one_round(
    gateway: Gateway, streams: int, clip: bytes, after: float, name: str
) -> tuple[list[tuple[float, float]], float]:
    limits = httpx.Limits(max_connections=streams + 4)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as client:
        live = [asyncio.create_task(pcm_stream(client, gateway.url, i)) for i in range(streams)]
        await asyncio.sleep(after)
        save = await save_voice(client, gateway.url, clip, name)
        return await asyncio.gather(*live), save


def measure(
    gateway: Gateway, args: argparse.Namespace, clip: bytes, name: str
) -> dict[str, object]:
    results, save = asyncio.run(one_round(gateway, args.streams, clip, args.after, name))
    stalls = [stall for stall, _ in results]
    return {
        "streams": args.streams,
        "stall_mean_s": round(statistics.fmean(stalls), 3),
        "stall_worst_s": round(max(stalls), 3),
        "stalled": sum(s > 0.001 for s in stalls),
        "lowest_lead_s": round(min(lead for _, lead in results), 3),
        "save_s": round(save, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--rate", type=float, default=95.0, help="tokens per second per stream")
    parser.add_argument("--frames", type=int, default=120, help="frames per stream (120 = 10 s)")
    parser.add_argument("--reference-seconds", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=1.5, help="seconds before the upload")
    parser.add_argument("--codec", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--rounds", type=int, default=1)
    add_gateway_root_option(parser)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()

    snac_dir = random_snac(args.codec)
    clip = reference_wav(args.reference_seconds)
    machine = f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"# {machine}, codec {args.codec}, {args.streams} streams x {args.frames} frames at "
          f"{args.rate:g} tokens/s, a {args.reference_seconds:g} s reference after "
          f"{args.after:g} s, load {os.getloadavg()[0]:.2f}")  # fmt: skip
    env = {"MAX_REFERENCE_SECONDS": str(max(30.0, args.reference_seconds + 1))}
    variants = [ROOT, *(root.resolve() for root in args.gateway_root)]
    rows: list[dict[str, object]] = []
    with paced_backend(args.rate, args.frames) as backend:
        for k, root in alternating(variants, args.rounds):
            data = {"DATA_DIR": tempfile.mkdtemp(prefix="voices-")}  # no voice saved before
            with running_gateway(backend, snac_dir, env | data, root) as gateway:
                row: dict[str, object] = {"variant": variant_name(root, "this"), "round": k}
                row |= measure(gateway, args, clip, f"Voice {k}")
            rows.append(row)
            print(json.dumps(row), flush=True)
    for name in dict.fromkeys(row["variant"] for row in rows):
        mine = [row for row in rows if row["variant"] == name]
        worst = [float(str(row["stall_worst_s"])) for row in mine]
        lowest = [float(str(row["lowest_lead_s"])) for row in mine]
        print(f"# {name}: worst stall per stream mean {statistics.fmean(worst):.3f} s, "
              f"lowest lead mean {statistics.fmean(lowest):.3f} s (rounds "
              f"{' '.join(f'{w:.3f}' for w in lowest)}), stalled streams "
              f"{sum(int(str(row['stalled'])) for row in mine)} of "
              f"{args.streams * len(mine)}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
