"""The in-process token engine: an Orpheus checkpoint run with transformers.

`model.generate` is blocking, so every stream runs it in its own thread and hands
token ids to the event loop with `call_soon_threadsafe`; the loop never waits on
torch. The number of generation threads is bounded by ``max_streams``: a request
beyond it is refused at once with `Overloaded` rather than queued, because a queue
of synthesis requests would only turn into late audio. A consumer that stops
iterating sets the stream's cancel event, which a stopping criterion checks after
every decoding step, and waits for the thread to end, so its slot is free again
when the iterator is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessorList,
    PreTrainedModel,
    StoppingCriteria,
    StoppingCriteriaList,
)
from transformers.generation.streamers import BaseStreamer
from transformers.tokenization_utils_base import PreTrainedTokenizerBase

from app.engine.base import (
    EngineLoadError,
    EngineUsage,
    FinishReason,
    GenerationParams,
    Prompt,
    TokenBatch,
    WakeAt,
)
from app.engine.constraints import OrpheusSampler
from app.errors import BackendError, BackendUnavailable, InvalidRequest, Overloaded
from app.vocab import (
    AUDIO_TOKEN_BASE,
    AUDIO_TOKEN_END,
    BOS,
    CUSTOM_TOKEN_BASE,
    PAD,
    START_OF_HUMAN,
)

log = logging.getLogger(__name__)

THREAD_PREFIX = "orpheus-generate"
_JOIN_TIMEOUT_S = 5.0
_REMEDY = (
    "Point TTS_MODEL at a local folder holding an Orpheus checkpoint (config.json, tokenizer "
    "files, weights), set TTS_API to use a completions server instead, or start with --demo "
    "(TTS_DEMO=1) for the built-in random-weight model."
)


@dataclass(eq=False)
class _Job:
    cancel: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


@dataclass(frozen=True)
class _End:
    error: Exception | None = None


_Post = Callable[["list[int] | _End"], None]


class _QueueStreamer(BaseStreamer):
    """Forwards each decoding step's token ids (the first `put` is the prompt)."""

    def __init__(self, post: _Post) -> None:
        self._post = post
        self._prompt_seen = False

    def put(self, value: torch.Tensor) -> None:
        if not self._prompt_seen:
            self._prompt_seen = True
            return
        self._post([int(t) for t in value.reshape(-1).tolist()])

    def end(self) -> None:
        pass


class _Cancelled(StoppingCriteria):
    def __init__(self, event: threading.Event) -> None:
        self._event = event

    def __call__(self, input_ids: torch.LongTensor, scores: Any, **kwargs: Any) -> torch.BoolTensor:
        return torch.full(
            (input_ids.shape[0],), self._event.is_set(), dtype=torch.bool, device=input_ids.device
        )


class LocalEngine:
    """`TokenEngine` over a transformers causal LM with the Orpheus vocabulary."""

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        *,
        name: str,
        max_streams: int = 4,
    ) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        self.name = name
        self.max_streams = max_streams
        self._model = model
        self._tokenizer = tokenizer
        text_config = model.config.get_text_config()
        self._vocab_size = int(text_config.vocab_size)
        context = getattr(text_config, "max_position_embeddings", None)
        self._context: int | None = int(context) if context else None
        self._lock = threading.Lock()
        self._jobs: set[_Job] = set()
        self._closed = False

    @classmethod
    def load(cls, model: str, *, device: str = "auto", max_streams: int = 4) -> LocalEngine:
        """Load a hub id or a local folder; raises `EngineLoadError` with the remedy."""
        source = _resolve_source(model)
        target = _resolve_device(device)
        config = _step(model, "its config", lambda: AutoConfig.from_pretrained(source))
        vocab = int(getattr(config.get_text_config(), "vocab_size", 0) or 0)
        if vocab < AUDIO_TOKEN_END:
            raise EngineLoadError(
                f"TTS_MODEL={model!r} is not an Orpheus model: its vocabulary has {vocab} ids, "
                f"the Orpheus audio tokens need ids up to {AUDIO_TOKEN_END - 1}. {_REMEDY}"
            )
        tokenizer = _step(model, "its tokenizer", lambda: AutoTokenizer.from_pretrained(source))
        _check_tokenizer(model, tokenizer)
        dtype = _dtype_for(target)
        log.info("loading %s on %s (%s)", model, target, dtype)
        loaded = _step(
            model,
            "its weights",
            lambda: AutoModelForCausalLM.from_pretrained(source, dtype=dtype).to(target).eval(),
        )
        # The name is shown by /health: the kind of engine, not where its weights live.
        return cls(loaded, tokenizer, name="local", max_streams=max_streams)

    @property
    def model(self) -> PreTrainedModel:
        return self._model

    @property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return self._tokenizer

    @property
    def context_length(self) -> int | None:
        """The model's maximum sequence length (prompt + generated), when it declares one."""
        return self._context

    @property
    def active_streams(self) -> int:
        with self._lock:
            return len(self._jobs)

    async def ready(self) -> bool:
        return not self._closed

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            jobs = list(self._jobs)
        for job in jobs:
            job.cancel.set()
        threads = [job.thread for job in jobs if job.thread is not None]
        await asyncio.to_thread(_join_all, threads, _JOIN_TIMEOUT_S)

    async def stream(
        self, prompt: Prompt, params: GenerationParams, *, wake: WakeAt | None = None
    ) -> AsyncGenerator[TokenBatch, None]:
        input_ids = self.prompt_ids(prompt)
        max_new = self._max_new_tokens(len(input_ids), params.max_tokens)
        stop_ids = set(params.stop_token_ids)
        job = self._admit()
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[list[int] | _End] = asyncio.Queue()
        exited: asyncio.Future[None] = loop.create_future()

        def post(item: list[int] | _End) -> None:
            try:
                loop.call_soon_threadsafe(inbox.put_nowait, item)
            except RuntimeError:  # the loop is gone: nobody is listening any more
                job.cancel.set()

        def on_exit() -> None:
            self._release(job)
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(_resolve, exited)

        job.thread = threading.Thread(
            target=self._generate,
            args=(job, input_ids, max_new, params, post, on_exit),
            name=f"{THREAD_PREFIX}-{id(job):x}",
            daemon=True,
        )
        started = False
        try:
            job.thread.start()
            started = True
            count, stopped = 0, False
            while True:
                wake_at = wake() if wake is not None and inbox.empty() else None
                if wake_at is not None:
                    try:
                        async with asyncio.timeout(max(0.0, wake_at - time.perf_counter())):
                            first = await inbox.get()
                    except TimeoutError:
                        yield TokenBatch([])  # a tick: the consumer's time came first
                        continue
                else:
                    first = await inbox.get()
                items = [first]
                while not inbox.empty():
                    items.append(inbox.get_nowait())
                ids: list[int] = []
                for item in items:
                    if isinstance(item, _End):
                        if item.error is not None:
                            raise BackendError(
                                f"in-process generation failed: {type(item.error).__name__}",
                                detail=str(item.error),
                            ) from item.error
                        reason: FinishReason = (
                            "stop" if stopped else "length" if count >= max_new else "abort"
                        )
                        usage = EngineUsage(prompt_tokens=len(input_ids), completion_tokens=count)
                        yield TokenBatch(ids, reason, usage)
                        return
                    count += len(item)
                    for token in item:
                        if token in stop_ids:
                            stopped = True
                        elif not stopped:
                            ids.append(token)
                if ids:
                    yield TokenBatch(ids)
        finally:
            job.cancel.set()
            if started:
                await _wait_exit(exited)
            else:
                self._release(job)

    def _generate(
        self,
        job: _Job,
        input_ids: list[int],
        max_new: int,
        params: GenerationParams,
        post: _Post,
        on_exit: Callable[[], None],
    ) -> None:
        try:
            device = self._model.device
            ids = torch.tensor([input_ids], dtype=torch.long, device=device)
            sampler = OrpheusSampler(
                len(input_ids),
                stop_token_ids=params.stop_token_ids,
                temperature=params.temperature,
                top_p=params.top_p,
                repetition_penalty=params.repetition_penalty,
                seed=params.seed,
            )
            with torch.inference_mode():
                self._model.generate(
                    inputs=ids,
                    attention_mask=torch.ones_like(ids),
                    generation_config=self._generation_config(max_new, params),
                    logits_processor=LogitsProcessorList([sampler]),
                    stopping_criteria=StoppingCriteriaList([_Cancelled(job.cancel)]),
                    streamer=_QueueStreamer(post),
                )
            post(_End())
        except Exception as exc:  # every failure belongs to the consumer, not the thread
            post(_End(exc))
        finally:
            on_exit()

    def _generation_config(self, max_new: int, params: GenerationParams) -> GenerationConfig:
        # Sampling happens in the processor chain; generate only takes its argmax.
        return GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=max_new,
            do_sample=False,
            num_beams=1,
            # Neutral values, so the checkpoint's sampling defaults are not merged in.
            temperature=1.0,
            top_p=1.0,
            repetition_penalty=1.0,
            # Never empty: without a stop id nothing but max_new_tokens ends a generation.
            eos_token_id=sorted(params.stop_token_ids) or [PAD],
            pad_token_id=PAD,
            bos_token_id=BOS,
        )

    def prompt_ids(self, prompt: Prompt) -> list[int]:
        """The ids generation starts from: ``prompt.token_ids``, or the text tokenized
        without added specials (Orpheus prompts spell their control tokens)."""
        if prompt.token_ids is not None:
            ids = list(prompt.token_ids)
        else:
            ids = list(self._tokenizer(prompt.text, add_special_tokens=False)["input_ids"])
        if not ids:
            raise InvalidRequest("the prompt is empty", param="input")
        bad = [t for t in ids if not 0 <= t < self._vocab_size]
        if bad:
            raise InvalidRequest(f"prompt token ids outside the vocabulary: {bad[:5]}")
        return ids

    def _max_new_tokens(self, prompt_tokens: int, max_tokens: int) -> int:
        if max_tokens < 1:
            raise InvalidRequest("max_tokens must be at least 1", param="max_tokens")
        if self._context is None:
            return max_tokens
        if prompt_tokens >= self._context:
            raise InvalidRequest(
                f"the prompt has {prompt_tokens} tokens; the model's context is {self._context}",
                param="input",
            )
        return min(max_tokens, self._context - prompt_tokens)

    def _admit(self) -> _Job:
        with self._lock:
            if self._closed:
                raise BackendUnavailable("the in-process engine is shut down")
            if len(self._jobs) >= self.max_streams:
                raise Overloaded(
                    f"all {self.max_streams} generation slots of the in-process engine are busy; "
                    "retry shortly",
                    headers={"Retry-After": "1"},
                )
            job = _Job()
            self._jobs.add(job)
            return job

    def _release(self, job: _Job) -> None:
        with self._lock:
            self._jobs.discard(job)


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _wait_exit(exited: asyncio.Future[None]) -> None:
    try:
        await asyncio.wait_for(asyncio.shield(exited), _JOIN_TIMEOUT_S)
    except TimeoutError:
        log.warning("a generation thread did not stop within %.0f s", _JOIN_TIMEOUT_S)


def _join_all(threads: list[threading.Thread], timeout: float) -> None:
    for thread in threads:
        thread.join(timeout)


def _resolve_source(model: str) -> str:
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise EngineLoadError(
                f"TTS_MODEL={model!r} is a folder without config.json; point it at the folder "
                "that holds config.json, the tokenizer files and the weights."
            )
        return str(path)
    if path.exists():
        raise EngineLoadError(f"TTS_MODEL={model!r} is a file, not a model folder. {_REMEDY}")
    if model.startswith(("/", ".", "~")) or model.count("/") > 1 or "\\" in model:
        raise EngineLoadError(f"TTS_MODEL={model!r}: no such directory. {_REMEDY}")
    return model  # a hub id: transformers resolves it through the local cache or the hub


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        target = torch.device(device)
    except (RuntimeError, ValueError) as exc:
        raise EngineLoadError(f"DEVICE={device!r} is not a torch device") from exc
    if target.type == "cuda" and not torch.cuda.is_available():
        raise EngineLoadError("DEVICE=cuda but no CUDA device is visible; set DEVICE=cpu or auto")
    return target


def _dtype_for(device: torch.device) -> torch.dtype:
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def _step(model: str, what: str, load: Callable[[], Any]) -> Any:
    try:
        return load()
    except Exception as exc:
        where = (
            "from the local folder"
            if Path(model).expanduser().is_dir()
            else "from the Hugging Face hub or its local cache (no network to huggingface.co, "
            "offline mode, or a gated model without HF_TOKEN are the usual causes)"
        )
        raise EngineLoadError(
            f"TTS_MODEL={model!r}: could not load {what} {where}: {type(exc).__name__}: {exc}. "
            f"{_REMEDY}"
        ) from exc


def _check_tokenizer(model: str, tokenizer: PreTrainedTokenizerBase) -> None:
    """The Orpheus prompt spells control tokens as text: they must tokenize to their ids."""
    last = AUDIO_TOKEN_END - 1 - CUSTOM_TOKEN_BASE
    probe = f"<custom_token_3><|begin_of_text|><custom_token_10><custom_token_{last}>"
    expected = [START_OF_HUMAN, BOS, AUDIO_TOKEN_BASE, AUDIO_TOKEN_END - 1]
    got = list(tokenizer(probe, add_special_tokens=False)["input_ids"])
    if got != expected:
        raise EngineLoadError(
            f"TTS_MODEL={model!r} is not an Orpheus model: its tokenizer maps {probe!r} to "
            f"{got[:8]}, not {expected} (the <custom_token_N> ids are missing). {_REMEDY}"
        )
