"""Turns a validated API request into a synthesis job (voice, prompt, sampling)."""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.engine.base import GenerationParams, Prompt
from app.errors import InvalidRequest
from app.protocol import OPENAI_TTS_MODELS, SpeechRequest, SynthesisOptions, VoiceRef
from app.service.cloning import VoiceReference, fit_max_tokens
from app.service.prompts import PromptAdapter
from app.service.speech import SynthesisJob
from app.service.voice_store import VoiceStore
from app.service.voices import VoiceCatalog


@dataclass(frozen=True)
class JobFactory:
    settings: Settings
    voices: VoiceCatalog
    adapter: PromptAdapter
    saved: VoiceStore | None = None

    @property
    def model_ids(self) -> tuple[str, ...]:
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

    def speech(self, req: SpeechRequest) -> SynthesisJob:
        self.check_model(req.model)
        self.check_text(req.input)
        if req.instructions is not None and len(req.instructions) > (
            self.settings.max_instructions_chars
        ):
            raise InvalidRequest(
                f"instructions exceed {self.settings.max_instructions_chars} characters.",
                param="instructions",
            )
        reference = self._saved_reference(req)
        if reference is not None:
            return self.clone(reference, req.input, req)
        voice = self.voices.resolve(req.voice_name)
        return self._job(self.adapter.speech_prompt(voice, req.input), req, req.max_tokens)

    def _saved_reference(self, req: SpeechRequest) -> VoiceReference | None:
        """The saved voice `req` names: by id for `{"id": ...}` (or a built-in name); for
        a string, built-in speakers and aliases first (saved names cannot shadow them),
        then a saved id or name. A short indexed SQLite lookup, done inline."""
        by_id = isinstance(req.voice, VoiceRef)
        if self.saved is None or (not by_id and self.voices.is_builtin(req.voice_name)):
            return None
        voice = self.saved.get(req.voice_name) if by_id else self.saved.find(req.voice_name)
        if voice is None:
            if by_id and not self.voices.is_builtin(req.voice_name):
                raise InvalidRequest(
                    f"No saved voice has id {req.voice_name!r}.",
                    param="voice",
                    code="invalid_voice",
                )
            return None
        try:
            return self.saved.reference(voice)
        except LookupError:
            return None

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
