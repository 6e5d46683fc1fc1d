"""Turns a validated API request and its resolved voice into a synthesis job.

Pure: the limits come from the settings, the prompt from the model family's
adapter, the token budget from the context length; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.engine.base import GenerationParams, Prompt
from app.errors import InvalidRequest
from app.protocol import OPENAI_TTS_MODELS, SpeechRequest, SynthesisOptions
from app.service.cloning import VoiceReference, fit_max_tokens
from app.service.prompts import PromptAdapter
from app.service.speech import SynthesisJob
from app.service.voices import Voice


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

    def speech(self, req: SpeechRequest, voice: Voice) -> SynthesisJob:
        """The job for a checked request (`check_speech`) in its resolved voice."""
        if isinstance(voice, VoiceReference):
            return self.clone(voice, req.input, req)
        return self._job(self.adapter.speech_prompt(voice, req.input), req, req.max_tokens)

    def clone(
        self,
        reference: VoiceReference,
        text: str,
        options: SynthesisOptions,
        *,
        param: str = "input",
    ) -> SynthesisJob:
        """A zero-shot job speaking `text` in the voice of `reference`, within the context."""
        self.check_text(text, param)
        budget = fit_max_tokens(
            reference,
            text,
            requested=options.max_tokens,
            default=self.settings.default_max_tokens,
            max_model_len=self.settings.max_model_len,
        )
        prompt = self.adapter.clone_prompt(reference.text, reference.token_ids, text)
        return self._job(prompt, options, budget)

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

    def _job(
        self, prompt: Prompt, options: SynthesisOptions, max_tokens: int | None
    ) -> SynthesisJob:
        return SynthesisJob(
            prompt=prompt,
            params=self.params(
                temperature=options.temperature,
                top_p=options.top_p,
                repetition_penalty=options.repetition_penalty,
                max_tokens=max_tokens,
                seed=options.seed,
            ),
            response_format=options.response_format,
            speed=options.speed,
            streaming=options.stream,
        )
