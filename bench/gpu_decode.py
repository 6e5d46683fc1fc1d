"""The GPU decode path in one run: eager vs CUDA graphs vs torch.compile, fp32 vs bf16.

Per decoder (``--modes`` x ``--dtypes``) it prints:
- warm: start-up seconds (graph capture or compilation of every bucket) and, on CUDA,
  the GPU memory the decoder holds after warm-up and its peak (MiB)
- rtf8 / rtf22: aggregate decode real-time factor, kept audio seconds per wall second,
  decoding batches of the real-time window (8 frames, 2 kept) and of the steady
  16-frame chunk (22 frames), back to back through the decoder (``--batch`` windows
  per call in batched modes, one in unbatched ones)
- streams: the most concurrent real-time streams the decoder sustains: N streams get
  tokens at 82/s through the real `StreamDecoder` (chunk schedule, crossfade) and
  `CodecService`; N is sustained when the p99 over all chunks of (a chunk's arrival
  minus the end of the audio its stream already held) is <= 0 and every stream ends
- graphs: share of codec calls a CUDA graph served (the rest ran eagerly)
It also prints the error of bfloat16 and float16 against float32 on the kept samples
(noise off; max, mean, SNR). Without CUDA the CPU-capable modes run (eager, compile)
and it says which figures need a GPU.

    python bench/gpu_decode.py                       # on a GPU: every mode, fp32 and bf16
    python bench/gpu_decode.py --modes eager-unbatched,compile-unbatched --max-streams 8
    python bench/gpu_decode.py --tiny --dtypes float32 --max-streams 64   # the service's cost
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.audio.schedule import Playback
from app.codec.accelerated import Accelerated, accelerate, bucket_plan
from app.codec.bucketed import BucketedCodec
from app.codec.service import CodecService, FrameCodec
from app.codec.snac import RECEPTIVE_FIELD_FRAMES, load_codec
from app.codec.tokens import frames_to_token_ids
from app.demo.random_snac import write_random_snac
from app.service.decoding import PipelineConfig, StreamDecoder

FRAME_S = SAMPLES_PER_FRAME / SAMPLE_RATE
PAD = 480  # the default 20 ms crossfade, with noise on
CUDA = torch.cuda.is_available()
F = SAMPLES_PER_FRAME


@dataclass
class Stream:
    lateness: list[float] = field(default_factory=list)
    lag: list[float] = field(default_factory=list)
    play_end: float = 0.0
    done: bool = False


def machine() -> str:
    cpu = f"{platform.processor() or platform.machine()}, torch {torch.__version__}"
    if not CUDA:
        return f"# no CUDA device: {cpu}, {torch.get_num_threads()} threads"
    props = torch.cuda.get_device_properties(0)
    try:
        query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
        driver = subprocess.run(query, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        driver = "unknown"
    return (
        f"# {props.name}, {props.total_memory / 2**30:.0f} GiB, driver {driver}, "
        f"CUDA {torch.version.cuda}, {cpu}"
    )


def build(snac_dir: Path, mode: str, dtype: str, args: argparse.Namespace) -> Accelerated:
    codec = load_codec(str(snac_dir), device="cuda" if CUDA else "cpu", dtype=dtype)
    batched = mode.endswith("-batched")
    plan = bucket_plan(
        None,
        max_window=args.max_frames + 6,
        max_batch=args.batch if batched else 1,
        context=3,
        pad=PAD,
    )
    kind = mode.split("-")[0]
    return accelerate(codec, plan, cuda_graphs=kind == "graphs", torch_compile=kind == "compile")


def rtf(codec: FrameCodec, batch: int, n: int, kept: int, reps: int) -> float:
    rng = np.random.default_rng(1)
    windows = [rng.integers(0, 4096, size=(batch, n, 7)) for _ in range(reps + 1)]
    codec.decode_batch(windows[0], keep=(3, 3 + kept), pad=PAD)
    started = time.perf_counter()
    for w in windows[1:]:
        codec.decode_batch(w, keep=(3, 3 + kept), pad=PAD)
    return reps * batch * kept * FRAME_S / (time.perf_counter() - started)


async def one_stream(
    service: CodecService, seconds: float, index: int, delay: float, out: Stream
) -> None:
    total = max(1, round(seconds / FRAME_S))
    frames = np.random.default_rng(index).integers(0, 4096, size=(total, 7))
    tokens = frames_to_token_ids(frames)
    decoder = StreamDecoder(
        service, PipelineConfig(crossfade_samples=PAD), stream=index, playback=Playback()
    )
    await asyncio.sleep(delay)
    t0, fed, period = time.perf_counter(), 0, 7 / 82.0
    first = True

    def arrived(pcm: np.ndarray) -> None:
        nonlocal first
        now, duration = time.perf_counter(), pcm.size / SAMPLE_RATE
        if first:
            out.play_end, first = now + duration, False
            return
        out.lateness.append(now - out.play_end)
        out.play_end = max(out.play_end, now) + duration

    while fed < total:
        wake = t0 + (fed + 1) * period
        deadline = decoder.deadline()
        wake = min(wake, deadline) if deadline is not None else wake
        # Lag: how late the loop wakes this stream, not how long its decodes took.
        target = max(wake, time.perf_counter())
        await asyncio.sleep(target - time.perf_counter())
        now = time.perf_counter()
        out.lag.append(max(0.0, now - target))
        due = min(total, int((now - t0) / period))
        if due > fed:
            decoder.feed(tokens[7 * fed : 7 * due])
            fed = due
        async for pcm in decoder.chunks(final=fed == total):
            arrived(pcm)
    out.done = True


async def trial(codec: FrameCodec, streams: int, batched: bool, args: argparse.Namespace) -> dict:
    service = CodecService(
        codec,
        dynamic_batching=batched,
        max_batch_size=args.batch,
        queue_size=max(1024, 4 * streams),
        receptive_field=RECEPTIVE_FIELD_FRAMES,
    )
    service.start()
    results = [Stream() for _ in range(streams)]
    ramp = np.random.default_rng(streams).uniform(0, args.ramp, size=streams)
    tasks = [
        asyncio.create_task(one_stream(service, args.seconds, i, float(ramp[i]), results[i]))
        for i in range(streams)
    ]
    started = time.perf_counter()
    await asyncio.wait(tasks, timeout=3 * args.seconds + args.ramp + 10)
    wall = time.perf_counter() - started
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stats = service.stats()
    await asyncio.to_thread(service.close)
    late = [x for r in results for x in r.lateness]
    p99 = float(np.percentile(late, 99)) if late else float("inf")
    lag = [x for r in results for x in r.lag]
    return {
        "streams": streams,
        "ok": p99 <= 0 and all(r.done for r in results),
        "p99_ms": 1000 * p99,
        "unfinished": sum(not r.done for r in results),
        "loop_lag_p99_ms": 1000 * float(np.percentile(lag, 99)) if lag else 0.0,
        "mean_batch": stats.jobs / stats.batches if stats.batches else 0.0,
        "busy": stats.decode_seconds_total / wall,
    }


def capacity(codec: FrameCodec, batched: bool, args: argparse.Namespace) -> int:
    """Doubling from --start-streams, then bisection to 10 %."""
    good, bad, n = 0, None, args.start_streams
    while n <= args.max_streams:
        row = asyncio.run(trial(codec, n, batched, args))
        print(
            f"    {n:5d} streams: p99 lateness {row['p99_ms']:8.1f} ms, unfinished "
            f"{row['unfinished']}, loop lag p99 {row['loop_lag_p99_ms']:.1f} ms, batch "
            f"{row['mean_batch']:.1f}, busy {row['busy']:.0%}",
            flush=True,
        )
        if not row["ok"]:
            bad = n
            break
        good, n = n, 2 * n
    while bad is not None and bad - good > max(1, good // 10):
        mid = (good + bad) // 2
        row = asyncio.run(trial(codec, mid, batched, args))
        print(f"    {mid:5d} streams: p99 lateness {row['p99_ms']:8.1f} ms", flush=True)
        good, bad = (mid, bad) if row["ok"] else (good, mid)
    return good


def precision(snac_dir: Path, dtypes: list[str]) -> None:
    device = "cuda" if CUDA else "cpu"
    rng = np.random.default_rng(7)
    windows = rng.integers(0, 4096, size=(4 if CUDA else 1, 22, 7))
    keep = (3, 19)
    reference = load_codec(str(snac_dir), device=device, noise=False)
    ref = reference.decode_batch(windows, keep=keep, pad=PAD)[:, 3 * F : 19 * F]
    for dtype in dtypes:
        codec = load_codec(str(snac_dir), device=device, noise=False, dtype=dtype)
        out = codec.decode_batch(windows, keep=keep, pad=PAD)[:, 3 * F : 19 * F]
        err = out - ref
        snr = 10 * np.log10(np.mean(ref**2) / max(np.mean(err**2), 1e-30))
        print(
            f"# {dtype} vs float32 on kept samples ({device}): max |err| "
            f"{np.abs(err).max():.2e}, mean {np.abs(err).mean():.2e}, SNR {snr:.1f} dB"
        )


def run_decoder(snac_dir: Path, mode: str, dtype: str, args: argparse.Namespace) -> None:
    gc.collect()
    before = 0
    if CUDA:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    chosen = build(snac_dir, mode, dtype, args)
    report = chosen.warm_up(lambda: False) if chosen.warm_up else None
    warm = f"{report.seconds:.1f} s ({report.prepared}/{report.shapes} shapes)" if report else "-"
    if CUDA:
        held = (torch.cuda.memory_allocated() - before) / 2**20
        warm += f", {held:.0f} MiB held, peak {torch.cuda.max_memory_allocated() / 2**20:.0f}"
    batched = mode.endswith("-batched")
    batch = args.batch if batched else 1
    r8 = rtf(chosen.codec, batch, 8, 2, args.reps)
    r22 = rtf(chosen.codec, batch, 22, 16, args.reps)
    print(f"{mode:>17} {dtype:>8}: warm {warm}; rtf8 {r8:.1f}, rtf22 {r22:.1f}", flush=True)
    if args.no_capacity:
        return
    sustained = capacity(chosen.codec, batched, args)
    served = ""
    if isinstance(chosen.codec, BucketedCodec):
        c = chosen.codec.counts
        served = f", graphs served {c.hits / max(1, c.hits + c.eager):.0%} of calls"
    print(f"{mode:>17} {dtype:>8}: sustains {sustained} real-time streams{served}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cpu_modes = "eager-unbatched,compile-unbatched"
    gpu_modes = "eager-unbatched,eager-batched,graphs-batched,compile-batched"
    parser.add_argument("--modes", default=gpu_modes if CUDA else cpu_modes)
    parser.add_argument("--dtypes", default="float32,bfloat16")
    parser.add_argument("--snac", type=Path, help="a SNAC directory; default: random real-size")
    parser.add_argument("--tiny", action="store_true", help="random tiny SNAC: service cost")
    parser.add_argument("--batch", type=int, default=64, help="windows per batch (batched)")
    parser.add_argument("--max-frames", type=int, default=16, help="CHUNK_MAX_FRAMES")
    parser.add_argument("--reps", type=int, default=20 if CUDA else 3)
    parser.add_argument("--seconds", type=float, default=4.0, help="audio per stream")
    parser.add_argument("--ramp", type=float, default=1.0, help="streams start over this")
    parser.add_argument("--start-streams", type=int, default=64 if CUDA else 1)
    parser.add_argument("--max-streams", type=int, default=8192 if CUDA else 16)
    parser.add_argument("--no-capacity", action="store_true")
    parser.add_argument("--torch-threads", type=int, default=None if CUDA else 1)
    args = parser.parse_args()
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    print(machine())
    if not CUDA:
        print(
            "# CPU figures only: graphs-batched, GPU memory and the 1000-stream target need a GPU"
        )
    snac_dir = args.snac or write_random_snac(Path(tempfile.mkdtemp()), tiny=args.tiny)
    size = "tiny" if args.tiny else "real size"
    source = f"from {args.snac}" if args.snac else f"random weights, {size}"
    print(
        f"# SNAC {source}, noise on, crossfade pad {PAD}, batch {args.batch}, "
        f"{args.seconds:g} s per stream, {args.reps} reps"
    )
    precision(snac_dir, ["bfloat16", "float16"])
    for mode in args.modes.split(","):
        for dtype in args.dtypes.split(","):
            run_decoder(snac_dir, mode, dtype, args)


if __name__ == "__main__":
    main()
