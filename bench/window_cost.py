"""What does one decode window cost: a fixed price per call, or a price per frame it keeps?

Times `SnacCodec.decode_batch` (one torch thread, noise off, the cropped decode the
service uses) for windows of ``kept`` frames with 3 frames of context each side, batched
``B`` at a time, and prints per shape: the first call (shape-specific set-up in oneDNN),
then the median of the following calls, per call and per kept frame of audio. If the
price were per call, batching would divide it; if it is per frame, larger windows and
batches save little and only fewer frames of context would.

    python bench/window_cost.py
    python bench/window_cost.py --codec real --batches 1,4 --kept 1,2,8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime_pacing import random_snac

CONTEXT = 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", choices=["tiny", "real"], default="tiny")
    parser.add_argument("--batches", default="1,4,16")
    parser.add_argument("--kept", default="1,2,4,8")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    from app.codec.snac import load_codec

    codec = load_codec(str(random_snac(args.codec)), device="cpu", noise=False)
    rng = np.random.default_rng(0)
    print(f"# codec {args.codec}, 1 torch thread, {CONTEXT} context frames each side")
    print("batch kept | first call ms | median ms per call | ms per kept frame")
    for batch in (int(b) for b in args.batches.split(",")):
        for kept in (int(k) for k in args.kept.split(",")):
            n = kept + 2 * CONTEXT
            keep = (CONTEXT, CONTEXT + kept)
            times = []
            for _ in range(args.repeats + 1):
                frames = rng.integers(0, 4096, size=(batch, n, 7))
                started = time.perf_counter()
                codec.decode_batch(frames, keep=keep)
                times.append((time.perf_counter() - started) * 1000)
            warm = statistics.median(times[1:])
            print(
                f"{batch:5d} {kept:4d} | {times[0]:13.1f} | {warm:18.2f} | "
                f"{warm / (batch * kept):17.2f}"
            )


if __name__ == "__main__":
    main()
