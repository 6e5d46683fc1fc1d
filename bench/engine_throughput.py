"""How many tokens per second does the in-process engine generate on this machine?

Runs LocalEngine over the demo model (tiny random-weight Llama, Orpheus vocabulary)
through its real async path: 1 stream, then ``--streams`` concurrent streams (one
generation thread each). Each stream keeps generating (new seed when END_OF_SPEECH
ends it) until it has produced ``--tokens`` tokens. For comparison, also times one
batched ``generate`` call over ``--streams`` rows with the same sampler, i.e. what
batching the streams together would buy. Real time needs about 82 tokens per second
per stream (7 tokens per 2048-sample frame at 24 kHz).

    python bench/engine_throughput.py [--tokens 700] [--streams 4] [--threads 2]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from transformers import GenerationConfig, LogitsProcessorList

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.demo.models import ensure_demo_models
from app.engine.base import GenerationParams, Prompt
from app.engine.constraints import OrpheusSampler
from app.engine.local import LocalEngine
from app.vocab import PAD, TOKENS_PER_FRAME

REAL_TIME_TOKENS_PER_S = TOKENS_PER_FRAME * SAMPLE_RATE / SAMPLES_PER_FRAME
PROMPT = Prompt(
    "<custom_token_3><|begin_of_text|>tara: The quick brown fox jumps over the lazy dog."
    "<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
)


async def one_stream(engine: LocalEngine, tokens: int, seed: int) -> tuple[int, float, float]:
    """(tokens produced, seconds, seconds to the first token)."""
    produced, first = 0, -1.0
    started = time.perf_counter()
    while produced < tokens:
        params = GenerationParams(tokens - produced, seed=seed)
        async for batch in engine.stream(PROMPT, params):
            if first < 0 and batch.token_ids:
                first = time.perf_counter() - started
            produced += len(batch.token_ids)
        seed += 1000
    return produced, time.perf_counter() - started, first


async def concurrent(engine: LocalEngine, streams: int, tokens: int) -> None:
    started = time.perf_counter()
    results = await asyncio.gather(*(one_stream(engine, tokens, s) for s in range(streams)))
    wall = time.perf_counter() - started
    total = sum(r[0] for r in results)
    per_stream = [r[0] / r[1] for r in results]
    first = statistics.median(r[2] for r in results)
    print(
        f"  {streams} stream(s): {total / wall:7.1f} tok/s in all, "
        f"{statistics.mean(per_stream):6.1f} tok/s per stream "
        f"({statistics.mean(per_stream) / REAL_TIME_TOKENS_PER_S:4.2f}x real time), "
        f"first token {first * 1000:5.0f} ms (median)"
    )


def batched(engine: LocalEngine, rows: int, tokens: int) -> None:
    model = engine.model
    ids = torch.tensor([engine.prompt_ids(PROMPT)] * rows, device=model.device)
    # No stop ids: every row runs to the end.
    sampler = OrpheusSampler(
        ids.shape[1], stop_token_ids=[], temperature=0.6, top_p=0.9, repetition_penalty=1.1, seed=0
    )
    config = GenerationConfig(
        max_new_tokens=tokens,
        do_sample=False,
        temperature=1.0,
        top_p=1.0,
        repetition_penalty=1.0,
        eos_token_id=[PAD],  # never allowed by the sampler: every row runs to the end
        pad_token_id=PAD,
    )
    started = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(
            inputs=ids,
            attention_mask=torch.ones_like(ids),
            generation_config=config,
            logits_processor=LogitsProcessorList([sampler]),
        )
    wall = time.perf_counter() - started
    total = (out.shape[1] - ids.shape[1]) * rows
    print(
        f"  batched generate, {rows} rows: {total / wall:7.1f} tok/s in all, "
        f"{total / rows / wall:6.1f} tok/s per row"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=700, help="tokens per stream")
    parser.add_argument("--streams", type=int, default=4, help="concurrent streams")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--cache-dir", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    cache = args.cache_dir or Path(tempfile.mkdtemp(prefix="engine-bench-"))
    models = ensure_demo_models(cache)
    engine = LocalEngine.load(str(models.llm_dir), device=args.device, max_streams=args.streams)
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
        f"torch {torch.__version__} threads={torch.get_num_threads()}, device={args.device}"
    )
    print(f"model: demo tiny Llama (hidden 64, 2 layers, vocab {engine.model.config.vocab_size})")
    await one_stream(engine, 50, 999)  # warm-up
    await concurrent(engine, 1, args.tokens)
    if args.streams > 1:
        await concurrent(engine, args.streams, args.tokens)
    # In a worker thread, like the engine's generations: on a busy machine torch ran
    # several times slower from the main thread than from a worker thread here.
    await asyncio.to_thread(batched, engine, 1, args.tokens)
    if args.streams > 1:
        await asyncio.to_thread(batched, engine, args.streams, args.tokens)
    await engine.aclose()


if __name__ == "__main__":
    asyncio.run(main())
