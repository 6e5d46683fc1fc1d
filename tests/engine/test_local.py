"""LocalEngine over a tiny random-weight Orpheus-layout Llama, through the real async path."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from app.demo.tiny_llama import build_model, write_tiny_orpheus_llm
from app.engine.base import GenerationParams, Prompt, TokenBatch
from app.engine.local import THREAD_PREFIX, EngineLoadError, LocalEngine
from app.errors import BackendUnavailable, InvalidRequest, Overloaded

ROOT = Path(__file__).resolve().parents[2]
END_OF_SPEECH = 128258
STOP = (END_OF_SPEECH,)
PROMPT_TEXT = (
    "<custom_token_3><|begin_of_text|>tara: Hello world<|eot_id|>"
    "<custom_token_4><custom_token_5><custom_token_1>"
)
# The ids real vLLM produced for this prompt from an Orpheus-layout tiny model
# (shared/reference/vllm-completions-stream.txt, return_token_ids=true).
PROMPT_IDS = (
    *(128259, 128000, 83, 64, 81, 64, 25, 220, 39, 68, 75, 75, 78, 220, 86, 78, 81, 75, 67),
    *(128009, 128260, 128261, 128257),
)
PROMPT = Prompt(PROMPT_TEXT)


def in_slot(token: int, position: int) -> bool:
    code = token - 128256 - 10 - (position % 7) * 4096
    return 0 <= code <= 4095


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # END_OF_SPEECH is likely (about 1 in 5 boundaries) so both finish reasons show quickly.
    return write_tiny_orpheus_llm(tmp_path_factory.mktemp("tiny") / "llm", mean_frames=4)


@pytest.fixture(scope="module")
def short_engine(model_dir: Path) -> LocalEngine:
    return LocalEngine.load(str(model_dir), device="cpu", max_streams=4)


@pytest.fixture(scope="module")
def endless_model() -> torch.nn.Module:
    # Same layout, END_OF_SPEECH about once in a million frames: streams run until stopped.
    return build_model(seed=1, mean_frames=1e6)


def endless(model: torch.nn.Module, short_engine: LocalEngine, max_streams: int) -> LocalEngine:
    return LocalEngine(
        model,
        short_engine.tokenizer,
        name="endless",
        max_streams=max_streams,
    )


async def collect(
    engine: LocalEngine, prompt: Prompt, params: GenerationParams
) -> list[TokenBatch]:
    return [batch async for batch in engine.stream(prompt, params)]


def generation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX)]


async def wait_no_threads(limit: float = 1.0) -> float:
    start = time.monotonic()
    while generation_threads():
        assert time.monotonic() - start < limit, "generation thread still running"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


async def test_tokenizer_spells_control_tokens_like_the_real_model(
    short_engine: LocalEngine,
) -> None:
    assert short_engine.prompt_ids(PROMPT) == list(PROMPT_IDS)
    assert await short_engine.ready()


@pytest.mark.parametrize("seed", [0, 1, 2])
async def test_every_streamed_token_sits_in_its_slot_and_the_end_is_reported(
    short_engine: LocalEngine, seed: int
) -> None:
    max_tokens = 40
    batches = await collect(
        short_engine, PROMPT, GenerationParams(max_tokens, seed=seed, stop_token_ids=STOP)
    )
    tokens = [t for batch in batches for t in batch.token_ids]
    assert all(in_slot(t, p) for p, t in enumerate(tokens))
    assert [b.finish_reason is not None for b in batches] == [False] * (len(batches) - 1) + [True]
    usage = batches[-1].usage
    assert usage is not None and usage.prompt_tokens == len(PROMPT_IDS)
    # The stop token counts as generated, as vLLM counts it.
    assert usage.completion_tokens == len(tokens) + (batches[-1].finish_reason == "stop")
    if batches[-1].finish_reason == "stop":
        assert len(tokens) % 7 == 0 and len(tokens) < max_tokens
    else:
        assert batches[-1].finish_reason == "length" and len(tokens) == max_tokens
    assert short_engine.active_streams == 0


async def test_both_finish_reasons_occur_and_stop_is_not_emitted(short_engine: LocalEngine) -> None:
    reasons = set()
    for seed in range(12):
        batches = await collect(
            short_engine, PROMPT, GenerationParams(15, seed=seed, stop_token_ids=STOP)
        )
        tokens = [t for batch in batches for t in batch.token_ids]
        assert END_OF_SPEECH not in tokens
        reasons.add(batches[-1].finish_reason)
        if batches[-1].finish_reason == "stop":
            assert len(tokens) in (0, 7, 14)
        else:
            assert len(tokens) == 15
    assert reasons == {"stop", "length"}


async def test_only_the_requested_stop_ids_end_a_generation(short_engine: LocalEngine) -> None:
    # The same seeds that stop early above run to max_tokens without stop ids: the
    # engine knows no stop token of its own.
    for seed in range(12):
        batches = await collect(short_engine, PROMPT, GenerationParams(15, seed=seed))
        tokens = [t for batch in batches for t in batch.token_ids]
        assert batches[-1].finish_reason == "length" and len(tokens) == 15
        assert END_OF_SPEECH not in tokens


async def test_seed_repeats_and_text_prompt_equals_id_prompt(
    endless_model: torch.nn.Module, short_engine: LocalEngine
) -> None:
    engine = endless(endless_model, short_engine, 2)
    params = GenerationParams(28, seed=5)
    by_text = await collect(engine, PROMPT, params)
    by_ids = await collect(engine, Prompt("ignored", token_ids=PROMPT_IDS), params)
    other = await collect(engine, PROMPT, GenerationParams(28, seed=6))

    def flat(batches: list[TokenBatch]) -> list[int]:
        return [t for batch in batches for t in batch.token_ids]

    assert len(flat(by_text)) == 28
    assert flat(by_text) == flat(by_ids)
    assert flat(by_text) != flat(other)


async def test_breaking_early_stops_the_thread_and_frees_the_slot(
    endless_model: torch.nn.Module, short_engine: LocalEngine
) -> None:
    engine = endless(endless_model, short_engine, 1)
    async with aclosing(engine.stream(PROMPT, GenerationParams(100_000))) as stream:
        async for batch in stream:
            assert batch.token_ids
            assert engine.active_streams == 1
            break
        started = time.monotonic()
    assert time.monotonic() - started < 1.0
    assert engine.active_streams == 0
    await wait_no_threads()
    again = await collect(engine, PROMPT, GenerationParams(7))
    assert sum(len(b.token_ids) for b in again) == 7


async def test_cancelling_the_consumer_frees_the_slot(
    endless_model: torch.nn.Module, short_engine: LocalEngine
) -> None:
    engine = endless(endless_model, short_engine, 1)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in engine.stream(PROMPT, GenerationParams(100_000)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await wait_no_threads()
    assert engine.active_streams == 0


async def test_refuses_beyond_max_streams_at_once(
    endless_model: torch.nn.Module, short_engine: LocalEngine
) -> None:
    engine = endless(endless_model, short_engine, 2)
    params = GenerationParams(100_000)
    async with (
        aclosing(engine.stream(PROMPT, params)) as one,
        aclosing(engine.stream(PROMPT, params)) as two,
    ):
        await anext(one)
        await anext(two)
        started = time.monotonic()
        with pytest.raises(Overloaded) as refused:
            await anext(engine.stream(PROMPT, params))
        assert time.monotonic() - started < 0.5
        assert refused.value.status_code == 503
        assert engine.active_streams == 2
    assert engine.active_streams == 0
    batches = await collect(engine, PROMPT, GenerationParams(7))
    assert batches[-1].finish_reason == "length"


async def test_event_loop_keeps_running_while_generating(
    endless_model: torch.nn.Module, short_engine: LocalEngine
) -> None:
    engine = endless(endless_model, short_engine, 1)
    gaps: list[float] = []

    async def tick() -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticker = asyncio.create_task(tick())
    count = 0
    async with aclosing(engine.stream(PROMPT, GenerationParams(100_000))) as stream:
        async for batch in stream:
            count += len(batch.token_ids)
            if count >= 60:
                break
    ticker.cancel()
    # Generating 60 tokens takes far longer than any gap; a blocked loop would show it.
    assert len(gaps) > 5
    assert max(gaps) < 0.25


async def test_aclose_aborts_streams_and_refuses_new_ones(
    endless_model: torch.nn.Module, short_engine: LocalEngine
) -> None:
    engine = endless(endless_model, short_engine, 2)
    batches: list[TokenBatch] = []
    first = asyncio.Event()

    async def consume(stream: AsyncIterator[TokenBatch]) -> None:
        async for batch in stream:
            batches.append(batch)
            first.set()

    task = asyncio.create_task(consume(engine.stream(PROMPT, GenerationParams(100_000))))
    await asyncio.wait_for(first.wait(), 30)
    await engine.aclose()
    await asyncio.wait_for(task, 2)
    assert batches[-1].finish_reason == "abort"
    assert not await engine.ready()
    with pytest.raises(BackendUnavailable):
        await anext(engine.stream(PROMPT, GenerationParams(7)))
    assert not generation_threads()


async def test_rejects_empty_and_oversized_prompts(short_engine: LocalEngine) -> None:
    with pytest.raises(InvalidRequest):
        await anext(short_engine.stream(Prompt(""), GenerationParams(7)))
    context = short_engine.context_length
    assert context is not None
    with pytest.raises(InvalidRequest):
        await anext(
            short_engine.stream(Prompt("x", token_ids=(65,) * context), GenerationParams(7))
        )
    with pytest.raises(InvalidRequest):
        await anext(short_engine.stream(Prompt("x", token_ids=(10**7,)), GenerationParams(7)))
    assert short_engine.active_streams == 0


def test_missing_directory_is_explained(tmp_path: Path) -> None:
    with pytest.raises(EngineLoadError, match=r"TTS_MODEL=.*no such directory"):
        LocalEngine.load(str(tmp_path / "nowhere"))
    with pytest.raises(EngineLoadError, match=r"TTS_MODEL=.*without config\.json"):
        LocalEngine.load(str(tmp_path))


def test_small_vocabulary_is_not_orpheus(tmp_path: Path, model_dir: Path) -> None:
    config = json.loads((model_dir / "config.json").read_text())
    config["vocab_size"] = 128256
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(EngineLoadError, match=r"TTS_MODEL=.*not an Orpheus model.*128256 ids"):
        LocalEngine.load(str(tmp_path))


def test_tokenizer_without_custom_tokens_is_not_orpheus(tmp_path: Path, model_dir: Path) -> None:
    shutil.copy(model_dir / "config.json", tmp_path / "config.json")
    plain = Tokenizer(models.BPE(vocab={chr(c): c - 33 for c in range(33, 127)}, merges=[]))
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=plain)  # type: ignore[no-untyped-call]
    tokenizer.save_pretrained(tmp_path)
    with pytest.raises(EngineLoadError, match=r"TTS_MODEL=.*custom_token_N"):
        LocalEngine.load(str(tmp_path))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_names_the_device_setting(model_dir: Path) -> None:
    with pytest.raises(EngineLoadError, match="DEVICE=cuda"):
        LocalEngine.load(str(model_dir), device="cuda")


def test_hub_id_without_network_fails_fast_with_the_remedy(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    code = (
        "from app.engine.local import LocalEngine, EngineLoadError\n"
        "try:\n"
        "    LocalEngine.load('canopylabs/orpheus-3b-0.1-ft')\n"
        "except EngineLoadError as exc:\n"
        "    print(exc)\n"
    )
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 0, result.stderr
    message = result.stdout
    assert "TTS_MODEL='canopylabs/orpheus-3b-0.1-ft'" in message
    assert "hub" in message and "TTS_API" in message and "--demo" in message


def test_the_engine_name_does_not_reveal_where_the_weights_are(
    short_engine: LocalEngine, model_dir: Path
) -> None:
    # /health shows the name to anyone who can reach it.
    assert short_engine.name == "local"
    assert str(model_dir) not in short_engine.name


async def test_a_wake_up_that_comes_before_a_token_is_a_tick_and_changes_no_token(
    short_engine: LocalEngine,
) -> None:
    params = GenerationParams(28, seed=5, stop_token_ids=STOP)
    plain = await collect(short_engine, PROMPT, params)
    woken: list[TokenBatch] = []
    ticks = 0
    # Always due: whenever no token waits, the stream hands control back at once.
    async for batch in short_engine.stream(PROMPT, params, wake=lambda: time.perf_counter() - 1):
        if batch.tick:
            ticks += 1
        else:
            woken.append(batch)
    assert ticks >= 1
    assert not any(batch.tick for batch in plain)
    assert [i for b in woken for i in b.token_ids] == [i for b in plain for i in b.token_ids]
    assert (woken[-1].finish_reason, woken[-1].usage) == (plain[-1].finish_reason, plain[-1].usage)
