"""Request, response and event models of the public API, kept apart from serving logic."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
)

from app.audio.formats import ResponseFormat
from app.audio.speed import MAX_SPEED, MIN_SPEED

StreamFormat = Literal["audio", "sse"]

OPENAI_TTS_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
MAX_VOICE_NAME_CHARS = 64
MAX_VOICE_DESCRIPTION_CHARS = 1000
MAX_CONSENT_CHARS = 200

_SURROGATES = re.compile("[\ud800-\udfff]")


def encodable(text: str) -> bool:
    """Whether `text` has no lone surrogate (category Cs), so it can be encoded as UTF-8."""
    return _SURROGATES.search(text) is None


def _check_encodable(value: object, field: str) -> None:
    # A lone surrogate cannot be encoded as UTF-8: tokenizers, HTTP clients and
    # databases fail on it far from here. Refuse it where the field is known, before
    # pydantic's own string check words it vaguely.
    if isinstance(value, str) and not encodable(value):
        raise ValueError(
            f"{field} must not contain lone surrogates (U+D800-U+DFFF): send valid Unicode"
        )


def _no_surrogates(value: object, info: ValidationInfo) -> object:
    _check_encodable(value, info.field_name or "text")
    return value


def voice_text(value: object) -> object:
    """A `voice` field's check, run before its union (`str | VoiceRef`): one error naming
    `voice`, not one per member of the union."""
    _check_encodable(value.get("id") if isinstance(value, dict) else value, "voice")
    return value


Text = Annotated[str, BeforeValidator(_no_surrogates)]
"""A text field of the public API: any Unicode string that can be encoded as UTF-8."""


class VoiceRef(BaseModel):
    """OpenAI SDK form for a custom voice: `voice={"id": "..."}`."""

    model_config = ConfigDict(extra="forbid")
    id: Text = Field(min_length=1)


class SynthesisOptions(BaseModel):
    """How to sample and deliver audio: shared by every synthesizing request."""

    response_format: ResponseFormat = "mp3"
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: StreamFormat = "audio"
    stream: bool = Field(default=True, description="false: one complete file with exact headers")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    repetition_penalty: float | None = Field(
        default=None, ge=1.0, le=2.0, description="Orpheus degrades below 1.1"
    )
    max_tokens: int | None = Field(default=None, ge=7, le=65536)
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    normalize: bool = Field(
        default=True,
        description="Read numbers, dates, symbols and markup as words (NORMALIZE_TEXT=false "
        "turns this off for every request).",
    )


class SpeechRequest(SynthesisOptions):
    """`POST /v1/audio/speech`: OpenAI's fields plus the Scicom API's sampling fields."""

    model_config = ConfigDict(extra="ignore")

    model: Text = Field(
        min_length=1, description="tts-1, tts-1-hd, gpt-4o-mini-tts or the served name"
    )
    input: Text = Field(description="Text to speak.")
    voice: str | VoiceRef = Field(
        description="A speaker name, an OpenAI voice name or a saved voice"
    )
    instructions: Text | None = Field(
        default=None, description="Accepted for compatibility; Orpheus models do not use it."
    )

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_shape(cls, value: object) -> object:
        # Checked before the union, which would report one type error per member.
        if isinstance(value, str | dict | VoiceRef):
            return value
        raise ValueError('voice must be a voice name or an object {"id": "..."}')

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input must contain text to speak")
        return value

    @field_validator("voice", mode="before")
    @classmethod
    def _voice_text(cls, value: object) -> object:
        return voice_text(value)

    @property
    def voice_name(self) -> str:
        return self.voice.id if isinstance(self.voice, VoiceRef) else self.voice


class CloneForm(SynthesisOptions):
    """`POST /v1/audio/vc` (multipart, besides the `reference_audio` file): the Scicom
    streaming TTS API's fields plus those `/v1/audio/speech` takes."""

    model_config = ConfigDict(extra="forbid")

    reference_text: Text = Field(description="Transcript of reference_audio.")
    generate_text: Text = Field(description="Text to speak in the reference voice.")
    model: Text | None = None


class SaveVoiceForm(BaseModel):
    """`POST /v1/audio/voices` (multipart, besides the clip: `reference_audio`, or
    `audio_sample` as the openai SDK's `audio.voices.create` names it)."""

    model_config = ConfigDict(extra="forbid")

    name: Text = Field(description="Unique name; usable as `voice` in /v1/audio/speech.")
    reference_text: Text | None = Field(
        default=None, description="Transcript of the clip (required: see the route)."
    )
    description: Text = Field(default="", max_length=MAX_VOICE_DESCRIPTION_CHARS)
    consent: Text = Field(
        default="",
        max_length=MAX_CONSENT_CHARS,
        description="OpenAI's consent recording id; kept with the voice as given, not verified.",
    )
    type: Text = Field(default="audio_sample", description="OpenAI's creation method.")
    shared: bool = Field(
        default=False, description="Usable by every API key (admin keys only; docs/voices.md)"
    )

    @field_validator("type")
    @classmethod
    def _audio_sample(cls, value: str) -> str:
        if value != "audio_sample":
            raise ValueError(
                f"type {value!r} is not supported: voices are cloned from an audio sample "
                "(audio_sample with its reference_text)"
            )
        return value


class VoiceInfo(BaseModel):
    """A saved voice: OpenAI's voice object (`id`, `object`, `name`, `created_at`, `type`)
    and what this gateway keeps of it."""

    id: str
    object: Literal["audio.voice"] = "audio.voice"
    type: Literal["audio_sample"] = "audio_sample"
    name: str
    consent: str | None = None
    description: str
    reference_text: str
    reference_seconds: float
    audio_tokens: int
    created_at: int
    shared: bool = Field(description="Usable by every API key, not only the one that saved it")


MAX_VOICES_PAGE = 100


class NamedItem(BaseModel):
    """An entry of the `{"id", "name"}` lists Open WebUI reads (`voices`, `models`)."""

    id: str
    name: str


class VoiceList(BaseModel):
    """A page of saved voices, oldest first (`limit`/`after` as OpenAI's list endpoints)."""

    object: Literal["list"] = "list"
    data: list[VoiceInfo]
    """The page of saved voices."""
    voices: list[NamedItem]
    """The voices a request may name by id and name: built-in speakers, aliases and this
    page's saved voices (Open WebUI reads this list)."""
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None


class VoiceDeleted(BaseModel):
    id: str
    object: Literal["audio.voice.deleted"] = "audio.voice.deleted"
    deleted: bool = True


class SpeechUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int


class AudioDeltaEvent(BaseModel):
    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str


class AudioDoneEvent(BaseModel):
    type: Literal["speech.audio.done"] = "speech.audio.done"
    usage: SpeechUsage


class ErrorEvent(BaseModel):
    type: Literal["error"] = "error"
    error: dict[str, Any]


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "orpheus-gateway"


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class AudioModelList(ModelList):
    """`GET /v1/audio/models`: OpenAI's list shape plus the `models` Open WebUI reads."""

    models: list[NamedItem]


class Speaker(BaseModel):
    id: str
    name: str
    kind: Literal["builtin", "alias", "saved"]
    maps_to: str | None = None


class SpeakerList(BaseModel):
    object: Literal["list"] = "list"
    default: str
    data: list[Speaker]


class NormalizeRequest(BaseModel):
    """`POST /v1/audio/normalize`: what the text front-end makes of an input."""

    model_config = ConfigDict(extra="forbid")

    input: Text = Field(description="Text as it would be sent to /v1/audio/speech.")
    normalize: bool = Field(
        default=True, description="false: segment the text as written (NORMALIZE_TEXT=false too)"
    )


class NormalizeResponse(BaseModel):
    input: str
    normalized: str = Field(description="The text to be spoken.")
    segments: list[str] = Field(description="One generation each, in order; the first is short.")
