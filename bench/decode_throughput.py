"""Does dynamic batching help the decoder service? Batched vs unbatched, in one run.

N synthetic streams produce frames at a token rate (82 tokens/s is real time: one
7-token frame per 85.3 ms; ``--fast`` adds a run at 4x that), each plans its windows
with the real `WindowPlanner` and awaits `CodecService.decode` for each window in
order, as a request pipeline does. Per setting it prints:

- rtf: audio seconds delivered per wall second, all streams together (N when they keep up)
- ttfa p50/p99: first token to first audio (the floor is 4 frames of tokens: 341 ms at 82/s)
- stall: worst gap in playback of any stream, playback starting at its first chunk and
  each later chunk due when the audio already delivered has played out; "stalled" counts
  streams with any gap, "unfin" those cut off by the time limit (3 x seconds + 10 s), whose
  open gap (or wait for first audio) at the cut counts too
- lag p50/p99: from a window's last frame arriving to its audio (the service's share)
- busy: share of the wall time the worker spent inside the codec; mean batch size

At exactly real time the planner itself stalls (a chunk needs 3 frames of look-ahead
that arrive no faster than they play): ``--modes ideal`` (no decoding) shows that floor.

``--codec tiny`` (milliseconds per decode) measures the service's own overhead;
``--codec real`` (the real 24 kHz widths, random weights) measures the codec.

    python bench/decode_throughput.py --codec tiny --streams 1,4,16,64 --fast
    python bench/decode_throughput.py --codec real --streams 1,4,16 --seconds 6
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.audio.windows import WindowPlanner
from app.codec.request import DecodeRequest
from app.codec.service import CodecService
from app.codec.snac import SnacCodec, load_codec
from app.codec.stats import CodecStats
from app.config import Settings
from app.demo.random_snac import write_random_snac

FRAME_SECONDS = SAMPLES_PER_FRAME / SAMPLE_RATE


@dataclass
class StreamResult:
    ttfa: float = float("nan")
    worst_stall: float = 0.0
    audio: float = 0.0
    done: bool = False
    started: float = 0.0
    play_end: float = 0.0
    lags: list[float] = field(default_factory=list)
    """Per window: from its last frame's arrival to its audio (the service's share)."""


@dataclass
class Row:
    codec: str
    rate: float
    streams: int
    mode: str
    rtf: float
    ttfa_p50_ms: float
    ttfa_p99_ms: float
    lag_p50_ms: float
    lag_p99_ms: float
    worst_stall_ms: float
    stalled_streams: int
    unfinished: int
    busy: float
    mean_batch: float
    batches: int
    wall_s: float


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


async def one_stream(
    service: CodecService | None,
    settings: Settings,
    seconds: float,
    rate: float,
    seed: int,
    out: StreamResult,
) -> None:
    """Updates ``out`` as it goes, so a stream cut off by the time limit still counts.
    Without a service the audio is "decoded" instantly: the planner's own floor."""
    frame_period = 7 / rate
    total = max(1, round(seconds / FRAME_SECONDS))
    frames = np.random.default_rng(seed).integers(0, 4096, size=(total, 7), dtype=np.int64)
    planner = WindowPlanner(
        context=settings.decode_context_frames,
        first_frames=settings.chunk_first_frames,
        max_frames=settings.chunk_max_frames,
    )
    # Streams start spread over one frame period, as requests do not arrive in lockstep.
    await asyncio.sleep(np.random.default_rng(seed).uniform(0, frame_period))
    t0 = out.started = time.perf_counter()
    delivered = 0
    while not planner.finished:
        arrived = min(total, int((time.perf_counter() - t0) / frame_period))
        windows = planner.plan(arrived, final=arrived == total)
        for w in windows:
            if service is not None:
                await service.decode(DecodeRequest.of(frames, w, stream=seed, first=delivered == 0))
            now = time.perf_counter()
            out.lags.append(now - (t0 + w.end * frame_period))  # frame k arrives at (k+1) periods
            duration = w.kept * FRAME_SECONDS
            if delivered == 0:
                out.ttfa, out.play_end = now - t0, now + duration
            else:
                out.worst_stall = max(out.worst_stall, now - out.play_end)
                out.play_end = max(out.play_end, now) + duration
            delivered += w.kept
            out.audio = delivered * FRAME_SECONDS
        if not windows and not planner.finished:
            next_frame = t0 + (arrived + 1) * frame_period
            await asyncio.sleep(max(0.0, next_frame - time.perf_counter()))
    out.done = True


async def scenario(
    codec: SnacCodec,
    settings: Settings,
    *,
    streams: int,
    mode: str,
    rate: float,
    seconds: float,
    max_batch_size: int,
    torch_threads: int | None,
) -> tuple[list[StreamResult], float, CodecStats]:
    service = CodecService(
        codec,
        dynamic_batching=mode == "batched",
        max_batch_size=max_batch_size,
        microsleep=settings.microsleep,
        queue_size=settings.decode_queue_size,
        torch_threads=torch_threads,
    )
    service.start()
    started = time.perf_counter()
    results = [StreamResult() for _ in range(streams)]
    decoder = None if mode == "ideal" else service
    tasks = [
        asyncio.create_task(one_stream(decoder, settings, seconds, rate, i, results[i]))
        for i in range(streams)
    ]
    # Bounded run time: a decoder that cannot keep up is cut off, and says so.
    _, pending = await asyncio.wait(tasks, timeout=3 * seconds + 10)
    cut = time.perf_counter()
    for r in results:
        # A stream cut off mid-way is stalled (or still waiting for audio) right now.
        if not r.done and r.audio > 0:
            r.worst_stall = max(r.worst_stall, cut - r.play_end)
        elif not r.done and r.started:
            r.ttfa = cut - r.started  # a lower bound
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    wall = time.perf_counter() - started
    stats = service.stats()
    await asyncio.to_thread(service.close)
    return results, wall, stats


def summarise(
    name: str, rate: float, streams: int, mode: str, results: list[StreamResult], wall: float,
    stats: CodecStats,
) -> Row:  # fmt: skip
    finished = [r for r in results if r.done]
    ttfas = [r.ttfa for r in results if r.ttfa == r.ttfa]  # not nan
    lags = [lag for r in results for lag in r.lags]
    stalls = [r.worst_stall for r in results]
    audio = sum(r.audio for r in results)
    return Row(
        codec=name,
        rate=rate,
        streams=streams,
        mode=mode,
        rtf=audio / wall,
        ttfa_p50_ms=1000 * percentile(ttfas, 50),
        ttfa_p99_ms=1000 * percentile(ttfas, 99),
        lag_p50_ms=1000 * percentile(lags, 50),
        lag_p99_ms=1000 * percentile(lags, 99),
        worst_stall_ms=1000 * max(stalls, default=float("nan")),
        stalled_streams=sum(s > 0.0 for s in stalls),
        unfinished=len(results) - len(finished),
        busy=stats.decode_seconds_total / wall,
        mean_batch=stats.jobs / stats.batches if stats.batches else 0.0,
        batches=stats.batches,
        wall_s=wall,
    )


def batch_cost(codec: SnacCodec, max_batch: int, reps: int) -> None:
    """Codec wall and CPU time per window (3 frames of context each side, cropped as the
    service asks) by batch size; sizes interleaved so that load from other processes hits
    all alike (CPU time is the steadier figure on a busy box)."""
    rng = np.random.default_rng(1)
    sizes = [b for b in (1, 2, 4, 8, 16, 32, 64) if b <= max_batch]
    for n in (10, 22):  # a growing chunk and the steady 16-frame chunk with its context
        wall: dict[int, list[float]] = {b: [] for b in sizes}
        cpu: dict[int, list[float]] = {b: [] for b in sizes}
        for _ in range(reps):
            for b in sizes:
                frames = rng.integers(0, 4096, size=(b, n, 7))
                started, cpu_started = time.perf_counter(), time.process_time()
                codec.decode_batch(frames, keep=(3, n - 3))  # as the service crops
                wall[b].append((time.perf_counter() - started) / b)
                cpu[b].append((time.process_time() - cpu_started) / b)
        cells = "  ".join(
            f"B={b}: {1000 * np.median(wall[b]):.0f}/{1000 * np.median(cpu[b]):.0f}" for b in sizes
        )
        print(f"# {n}-frame window, ms wall/cpu per window (median of {reps}): {cells}")


def build_codec(kind: str, noise: bool) -> SnacCodec:
    directory = Path(tempfile.mkdtemp(prefix="snac-bench-"))
    write_random_snac(directory, tiny=kind == "tiny", seed=0)
    codec = load_codec(str(directory), device="cpu", noise=noise)
    # Warm up the shapes a stream uses (torch.jit profiles the first calls of a shape).
    rng = np.random.default_rng(0)
    for n in (4, 8, 10, 14, 22, 19):
        for batch in (1, 2):
            codec.decode_batch(rng.integers(0, 4096, size=(batch, n, 7)))
    return codec


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--streams", default="1,4,16,64", help="comma separated stream counts")
    parser.add_argument("--rate", type=float, default=82.0, help="tokens/s of each stream")
    parser.add_argument("--fast", action="store_true", help="also run at 4x the token rate")
    parser.add_argument("--seconds", type=float, default=6.0, help="audio seconds per stream")
    parser.add_argument("--max-batch-size", type=int, default=16)
    parser.add_argument(
        "--modes", default="batched,unbatched", help="batched, unbatched, ideal (no decoding)"
    )
    parser.add_argument("--no-noise", action="store_true", help="decode without noise blocks")
    parser.add_argument("--torch-threads", type=int, help="intra-op threads of the decoder")
    parser.add_argument("--cost-reps", type=int, default=5, help="0 skips the batch cost table")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()

    settings = Settings()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    codec = build_codec(args.codec, noise=not args.no_noise)
    rates = [args.rate, 4 * args.rate] if args.fast else [args.rate]
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, codec {args.codec}, {args.seconds:g} s per stream, "
        f"max batch {args.max_batch_size}, microsleep {settings.microsleep}"
    )
    header = (
        f"{'rate':>5} {'streams':>7} {'mode':>9} {'rtf':>6} {'ttfa50':>7} {'ttfa99':>7} "
        f"{'lag50':>6} {'lag99':>6} "
        f"{'stall':>7} {'stalled':>7} {'unfin':>5} {'busy':>5} {'batch':>5} {'wall':>6}"
    )
    if args.cost_reps:
        batch_cost(codec, args.max_batch_size, args.cost_reps)
    print(header)
    rows = []
    for rate in rates:
        for streams in (int(s) for s in args.streams.split(",")):
            for mode in args.modes.split(","):
                results, wall, stats = asyncio.run(
                    scenario(
                        codec,
                        settings,
                        streams=streams,
                        mode=mode,
                        rate=rate,
                        seconds=args.seconds,
                        max_batch_size=args.max_batch_size,
                        torch_threads=args.torch_threads,
                    )
                )
                row = summarise(args.codec, rate, streams, mode, results, wall, stats)
                rows.append(row)
                print(
                    f"{rate:5.0f} {streams:7d} {mode:>9} {row.rtf:6.2f} "
                    f"{row.ttfa_p50_ms:7.0f} {row.ttfa_p99_ms:7.0f} "
                    f"{row.lag_p50_ms:6.0f} {row.lag_p99_ms:6.0f} {row.worst_stall_ms:7.0f} "
                    f"{row.stalled_streams:4d}/{streams:<2d} {row.unfinished:5d} "
                    f"{row.busy:5.0%} {row.mean_batch:5.1f} {row.wall_s:6.1f}",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=2))


if __name__ == "__main__":
    main()
