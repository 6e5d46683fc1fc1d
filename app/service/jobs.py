"""Turns a validated API request, its resolved voice and its segments into a synthesis job.

Pure: the limits come from the settings, the prompts from the model family's
adapter, the token budgets from the text and the context length; nothing here does I/O.

Each segment gets a budget from its length: enough for slow speech
(``SLOW_CHARS_PER_SECOND``) plus ``SLACK_SECONDS`` and a second per emotion tag, at
most ``DEFAULT_MAX_TOKENS``, and never more than the context leaves. A client's
``max_tokens`` bounds the whole response instead: it is shared between the segments
by their length (all of it to a single segment).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from app.config import Settings
from app.engine.base import GenerationParams
from app.errors import InvalidRequest
from app.protocol import OPENAI_TTS_MODELS, SpeechRequest, SynthesisOptions
from app.service.cloning import (
    TOKENS_PER_SECOND,
    VoiceReference,
    estimate_text_tokens,
    fit_max_tokens,
)
from app.service.prompts import PromptAdapter
from app.service.speech import Segment, SynthesisJob
from app.service.voices import Voice
from app.text.tags import EMOTION_TAG
from app.vocab import TOKENS_PER_FRAME

SLOW_CHARS_PER_SECOND: Final = 10.0
"""Slower than any Orpheus voice reads (14-16 characters a second): a budget to spare."""
SLACK_SECONDS: Final = 3.0
TAG_SECONDS: Final = 1.5
"""A laugh, a sigh: sounds the text does not count."""
PROMPT_OVERHEAD_TOKENS: Final = 8
"""Control tokens and the voice name around a speech prompt's text."""


@dataclass(frozen=True)
class JobBuilder:
    settings: Settings
    adapter: PromptAdapter

    @property
    def model_ids(self) -> tuple[str, ...]:
        """Every `model` a request may name: all are served by the one model."""
        return (self.settings.model_name, *OPENAI_TTS_MODELS)

    def check_model(self, model: str) -> None:
        if model not in self.model_ids:
            raise InvalidRequest(
                f"Unknown model {model!r}. Valid models: {', '.join(self.model_ids)}.",
                param="model",
                code="model_not_found",
            )

    def check_text(self, text: str, param: str = "input") -> None:
        if not text.strip():
            raise InvalidRequest(f"{param} must contain text to speak.", param=param)
        limit = self.settings.max_input_chars
        if len(text) > limit:
            raise InvalidRequest(
                f"{param} is {len(text)} characters; the limit is {limit}.",
                param=param,
                code="string_above_max_length",
            )

    def check_speech(self, req: SpeechRequest) -> None:
        """Everything about a speech request that needs no voice lookup."""
        self.check_model(req.model)
        self.check_text(req.input)
        limit = self.settings.max_instructions_chars
        if req.instructions is not None and len(req.instructions) > limit:
            raise InvalidRequest(
                f"instructions exceed {limit} characters.",
                param="instructions",
                code="string_above_max_length",
            )

    def speech(self, req: SynthesisOptions, voice: Voice, texts: Sequence[str]) -> SynthesisJob:
        """The job for a checked request (`check_speech`) in its resolved voice, speaking
        ``texts`` (the segments of its input) in order; a WebSocket session's options and
        the segments of its text so far."""
        if isinstance(voice, VoiceReference):
            return self.clone(voice, texts, req)
        budgets = self._budgets(texts, req.max_tokens)
        segments = []
        for text, budget in zip(texts, budgets, strict=True):
            room = self.settings.max_model_len - estimate_text_tokens(text) - PROMPT_OVERHEAD_TOKENS
            segments.append(
                Segment(
                    text,
                    self.adapter.speech_prompt(voice, text),
                    self._params(req, min(budget, max(room, TOKENS_PER_FRAME))),
                )
            )
        return self._job(segments, req)

    def clone(
        self,
        reference: VoiceReference,
        texts: Sequence[str],
        options: SynthesisOptions,
        *,
        param: str = "input",
    ) -> SynthesisJob:
        """A zero-shot job speaking ``texts`` in the voice of `reference`, each segment
        within the context (a 400 saying by how much where one cannot fit)."""
        explicit = options.max_tokens is not None
        segments = []
        for text, budget in zip(texts, self._budgets(texts, options.max_tokens), strict=True):
            self.check_text(text, param)
            fitted = fit_max_tokens(
                reference,
                text,
                requested=budget if explicit else None,
                default=budget,
                max_model_len=self.settings.max_model_len,
            )
            prompt = self.adapter.clone_prompt(reference.text, reference.token_ids, text)
            segments.append(Segment(text, prompt, self._params(options, fitted)))
        return self._job(segments, options)

    def _budgets(self, texts: Sequence[str], requested: int | None) -> list[int]:
        """Each segment's max_tokens (see the module docstring)."""
        if not texts:
            raise InvalidRequest("input must contain text to speak.", param="input")
        if requested is not None:
            total = sum(len(t) for t in texts) or 1
            shares = [requested * len(t) / total for t in texts]
            return [max(TOKENS_PER_FRAME, math.floor(share)) for share in shares]
        return [min(self.settings.default_max_tokens, segment_budget(t)) for t in texts]

    def params(
        self,
        *,
        temperature: float | None = None,
        top_p: float | None = None,
        repetition_penalty: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
    ) -> GenerationParams:
        s = self.settings
        return GenerationParams(
            max_tokens=max_tokens if max_tokens is not None else s.default_max_tokens,
            temperature=temperature if temperature is not None else s.default_temperature,
            top_p=top_p if top_p is not None else s.default_top_p,
            repetition_penalty=(
                repetition_penalty
                if repetition_penalty is not None
                else s.default_repetition_penalty
            ),
            seed=seed,
            stop_token_ids=self.adapter.stop_token_ids,
        )

    def _params(self, options: SynthesisOptions, max_tokens: int) -> GenerationParams:
        return self.params(
            temperature=options.temperature,
            top_p=options.top_p,
            repetition_penalty=options.repetition_penalty,
            max_tokens=max_tokens,
            seed=options.seed,
        )

    def _job(self, segments: Sequence[Segment], options: SynthesisOptions) -> SynthesisJob:
        return SynthesisJob(
            segments=tuple(segments),
            response_format=options.response_format,
            speed=options.speed,
            streaming=options.stream,
        )


def segment_budget(text: str) -> int:
    """Tokens enough for ``text`` read slowly, with room to spare (whole frames)."""
    seconds = len(text) / SLOW_CHARS_PER_SECOND + SLACK_SECONDS
    seconds += TAG_SECONDS * len(EMOTION_TAG.findall(text))
    frames = math.ceil(seconds * TOKENS_PER_SECOND / TOKENS_PER_FRAME)
    return frames * TOKENS_PER_FRAME
