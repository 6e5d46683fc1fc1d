"""The TokenEngine protocol: what every token backend (HTTP or in-process) provides.

An engine turns a prompt into a stream of token ids. Orpheus audio tokens are
`<custom_token_N>` = id 128256 + N; text a backend returns that is not a custom
token is reported as `NON_TOKEN` so the framer can count it.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

NON_TOKEN = -1
"""Placeholder id for a piece of generated text that is not a recognisable token."""

FinishReason = Literal["stop", "length", "abort"]


@dataclass(frozen=True)
class Prompt:
    """A prompt as text (for completions servers) and/or as token ids (exact)."""

    text: str
    token_ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class GenerationParams:
    max_tokens: int
    temperature: float = 0.6
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int | None = None
    stop_token_ids: tuple[int, ...] = ()


@dataclass
class EngineUsage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class TokenBatch:
    """Token ids that arrived together; the last batch of a stream has `finish_reason`.

    `usage` is set on a batch when the backend reported token counts (vLLM does with
    `stream_options.include_usage`). A batch with none of the three is a tick: the
    consumer's wake-up time came first (`WakeAt`).
    """

    token_ids: list[int]
    finish_reason: FinishReason | None = None
    usage: EngineUsage | None = None

    @property
    def tick(self) -> bool:
        return not self.token_ids and self.finish_reason is None and self.usage is None


WakeAt = Callable[[], float | None]
"""When (`time.perf_counter`) a stream's consumer wants control back though no token came,
asked before each wait (None: only for tokens); the stream then yields a tick. Timing the
wait inside the engine spares the consumer a task per batch, once per frame of a stream."""


class EngineLoadError(RuntimeError):
    """An engine's model cannot be served; the message names the setting and the remedy."""


class TokenEngine(Protocol):
    """A source of generated token ids.

    `stream` raises `app.errors.BackendError` subclasses: before its first item for
    failures the API can still turn into an HTTP status, later for mid-stream failures.
    Closing the iterator (client gone) must release the backend request promptly.
    """

    name: str

    def stream(
        self, prompt: Prompt, params: GenerationParams, *, wake: WakeAt | None = None
    ) -> AsyncGenerator[TokenBatch, None]: ...

    async def ready(self) -> bool:
        """True when the engine can take requests (used by readiness probes)."""
        ...

    async def aclose(self) -> None: ...
