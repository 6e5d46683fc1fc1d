"""What does one decode window cost: a fixed price per call, or a price per frame it keeps?

Times `SnacCodec.decode_batch` (one torch thread, noise off, the cropped decode the
service uses) for windows of ``kept`` frames with 3 frames of context each side, batched
``B`` at a time, and prints per shape: the first call (shape-specific set-up in oneDNN),
then the median of the following calls, per call and per kept frame of audio. If the
price were per call, batching would divide it; if it is per frame, larger windows and
batches save little and only fewer frames of context would.

``--modes scripted,eager`` compares the one-call TorchScript decode the CPU codec uses with
the eager one; ``--busy-thread`` times every call beside a Python thread that never sleeps,
as the event loop of a loaded gateway holds the GIL (eager ops each wait to take it back).

    python bench/window_cost.py
    python bench/window_cost.py --codec real --batches 1,4 --kept 1,2,8
    python bench/window_cost.py --modes scripted,eager --busy-thread --batches 1,12 --kept 1
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
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
    parser.add_argument("--modes", default="scripted", help="scripted, eager or both")
    parser.add_argument("--busy-thread", action="store_true", help="beside a busy Python thread")
    args = parser.parse_args()
    torch.set_num_threads(1)
    from app.codec.snac import load_codec

    snac = str(random_snac(args.codec))
    print(f"# codec {args.codec}, 1 torch thread, {CONTEXT} context frames each side"
          f"{', beside a busy Python thread' if args.busy_thread else ''}")  # fmt: skip
    print("mode batch kept | first call ms | median ms per call | ms per kept frame")
    for mode in args.modes.split(","):
        codec = load_codec(snac, device="cpu", noise=False, script=mode == "scripted")
        rng = np.random.default_rng(0)
        with busy_thread(args.busy_thread):
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
                        f"{mode:8s} {batch:5d} {kept:4d} | {times[0]:13.1f} | {warm:18.2f} | "
                        f"{warm / (batch * kept):17.2f}",
                        flush=True,
                    )


@contextmanager
def busy_thread(on: bool) -> Iterator[None]:
    """A thread running Python without pause while the block runs (when ``on``)."""
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            pass

    thread = threading.Thread(target=spin, daemon=True)
    if on:
        thread.start()
    try:
        yield
    finally:
        stop.set()
        if on:
            thread.join()


if __name__ == "__main__":
    main()
