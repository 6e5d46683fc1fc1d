"""What one request costs the event loop, apart from the audio it streams.

Voice agents (pipecat, LiveKit) send a sentence a request: one to three seconds of
audio. What the loop spends on a request whatever its length (routing, validation,
the backend connection, the pipeline's objects, the response's start and end) then
weighs as much as what it spends per frame. This bench runs the real gateway against
the paced vLLM-format backend of `bench/realtime_pacing.py` (``--frames`` frames a
stream) and sends ``--rounds`` bursts of ``--concurrency`` requests of each kind:

- ``health``: ``GET /health``, the server's floor (HTTP parse, middleware, routing)
- ``invalid``: a speech request refused with a 400 (an unknown voice): body, validation
- ``speech``: a short pcm speech request, streamed to the end

and prints the event loop's CPU (its thread, from /proc) per request of each kind, in
microseconds. Each burst opens new connections, as `bench/realtime_pacing.py` does.

    python bench/request_cost.py
    python bench/request_cost.py --frames 1,20 --gateway-root ../before --alternate 4

``--alternate K``: K rounds of every variant in turn (order reversed every other round),
then each variant's mean and its per-round ratio to the first variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from realtime_pacing import (
    ROOT,
    Gateway,
    alternating,
    paced_backend,
    random_snac,
    running_gateway,
    summarize_rounds,
    thread_cpu,
    variant_name,
)

KINDS = ("health", "invalid", "speech")


async def burst(url: str, kind: str, concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:

        async def one(seed: int) -> None:
            if kind == "health":
                response = await client.get(f"{url}/health")
                expected = 200
            else:
                voice = "tara" if kind == "speech" else "nobody-by-this-name"
                body = {"model": "tts-1", "voice": voice, "input": f"Request {seed}."}
                response = await client.post(
                    f"{url}/v1/audio/speech", json=body | {"response_format": "pcm"}
                )
                expected = 200 if kind == "speech" else 400
            if response.status_code != expected:
                raise RuntimeError(f"{kind}: HTTP {response.status_code}: {response.text[:200]}")

        await asyncio.gather(*(one(k) for k in range(concurrency)))


def measure(gateway: Gateway, kind: str, concurrency: int, rounds: int) -> int:
    """Loop CPU microseconds per request of ``kind``."""
    asyncio.run(burst(gateway.url, kind, concurrency))  # warm: first-use costs are not per request
    before = thread_cpu(gateway.process.pid)["loop"]
    for _ in range(rounds):
        asyncio.run(burst(gateway.url, kind, concurrency))
    spent = thread_cpu(gateway.process.pid)["loop"] - before
    return round(spent * 1e6 / (concurrency * rounds))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--frames", default="1", help="frames per speech request, e.g. 1,20")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--gateway-root", action="append", type=Path, default=[])
    parser.add_argument("--alternate", type=int, default=0, metavar="K")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    kinds = [k for k in args.kinds.split(",") if k]
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown kinds {sorted(unknown)}; choose from {', '.join(KINDS)}")

    snac_dir = random_snac("tiny")
    machine = f"{platform.node()} {os.cpu_count()} CPUs, Python {platform.python_version()}"
    print(f"# {machine}, load {os.getloadavg()[0]:.2f}", flush=True)
    variants = [ROOT, *(root.resolve() for root in args.gateway_root)]
    rows: list[dict[str, object]] = []
    for frames in [int(f) for f in args.frames.split(",")]:
        with paced_backend(82.0, frames) as backend:
            for k, root in alternating(variants, args.alternate):
                with running_gateway(backend, snac_dir, {}, root) as gateway:
                    for kind in kinds:
                        cost = measure(gateway, kind, args.concurrency, args.rounds)
                        row = {"variant": variant_name(root, "this"), "round": k}
                        row |= {"frames": frames, "kind": kind, "loop_us_per_request": cost}
                        rows.append(row)
                        print(json.dumps(row), flush=True)
    if args.alternate:
        setting = ("frames", "kind")
        summarize_rounds(rows, setting, "loop_us_per_request", "us", variant="variant")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
