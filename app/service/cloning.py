"""Voice cloning: a reference clip becomes audio tokens, and the context budget is checked.

The clip (any container FFmpeg reads, as a file object or bytes) is decoded in a
worker thread, SNAC-encoded on the codec service's worker (never on the event
loop), and its frames spelled as audio tokens in the codec's 7-slot order, so a
prompt carries exactly the ids the model would have generated for that audio.

The gateway has no tokenizer for completions servers, so the text part of a prompt
is estimated conservatively: one token per 3 characters, plus one more per
non-ASCII character (Llama-3's tokenizer averages about 4 ASCII characters per
token; accented and non-Latin characters often take one or two tokens each).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from typing import BinaryIO, Final

import numpy as np

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.audio.reference import ReferenceLimits, load_reference
from app.codec.service import CodecService
from app.codec.tokens import Frames, frames_to_token_ids
from app.errors import InvalidRequest
from app.service.prompts import sanitize_text
from app.vocab import TOKENS_PER_FRAME

CLONE_CONTROL_TOKENS: Final = 14
"""Control tokens of the zero-shot layout: 8 around the reference turn, 6 around the new one."""
MIN_GENERATION_TOKENS: Final = 12 * TOKENS_PER_FRAME
"""Room a default max_tokens may shrink to (about 1 s of audio) before a request is refused."""
TOKENS_PER_SECOND: Final = TOKENS_PER_FRAME * SAMPLE_RATE / SAMPLES_PER_FRAME


@dataclass(frozen=True)
class VoiceReference:
    """A cloning reference: its transcript and SNAC frames ``(n, 7)``."""

    text: str
    frames: Frames
    token_ids: tuple[int, ...] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_ids", tuple(frames_to_token_ids(self.frames)))

    @property
    def seconds(self) -> float:
        return len(self.frames) * SAMPLES_PER_FRAME / SAMPLE_RATE


REFERENCE_AUDIO: Final = "reference_audio"
"""The form field of the reference clip, named in errors about it."""


def transcript(value: str, param: str = "reference_text") -> str:
    """The reference transcript as it goes into prompts; 400 when nothing speakable is left."""
    text = sanitize_text(value)
    if not text:
        raise InvalidRequest(
            f"{param} must contain the transcript of {REFERENCE_AUDIO}.",
            param=param,
            code="missing_required_parameter",
        )
    return text


async def encode_reference(
    clip: BinaryIO | bytes,
    text: str,
    limits: ReferenceLimits,
    codec: CodecService,
    *,
    param: str = REFERENCE_AUDIO,
) -> VoiceReference:
    """The reference of an audio file: decoded and trimmed in a worker thread (400s name
    ``param``), then SNAC-encoded on the codec service's worker."""
    audio = await asyncio.to_thread(load_reference, clip, limits, param=param)
    frames = await codec.encode(audio.pcm)
    return VoiceReference(text=text, frames=np.asarray(frames, dtype=np.int64))


def estimate_text_tokens(text: str) -> int:
    """An upper estimate of the Llama-3 tokens of `text` (see the module docstring)."""
    return math.ceil(len(text) / 3) + sum(1 for ch in text if ord(ch) > 127)


def estimate_prompt_tokens(reference: VoiceReference, text: str) -> int:
    return (
        CLONE_CONTROL_TOKENS
        + len(reference.token_ids)
        + estimate_text_tokens(reference.text)
        + estimate_text_tokens(text)
    )


def fit_max_tokens(
    reference: VoiceReference,
    text: str,
    *,
    requested: int | None,
    default: int,
    max_model_len: int,
    param: str = "max_tokens",
) -> int:
    """The max_tokens a cloning request runs with, or a 400 saying how far over it is.

    An explicit `requested` must fit as given. Without one, the default shrinks to the
    room left (a long reference would otherwise always fail with the defaults), as
    long as at least `MIN_GENERATION_TOKENS` remain.
    """
    prompt = estimate_prompt_tokens(reference, text)
    audio = len(reference.token_ids)
    room = max_model_len - prompt
    wanted = requested if requested is not None else MIN_GENERATION_TOKENS
    if wanted <= room:
        return requested if requested is not None else min(default, room)
    over = wanted - room
    what = (
        f"max_tokens {requested}"
        if requested is not None
        else f"at least {wanted} tokens (about 1 s) of new audio"
    )
    raise InvalidRequest(
        f"The request does not fit the model's context of {max_model_len} tokens "
        f"(MAX_MODEL_LEN): the reference audio takes {audio} tokens "
        f"({reference.seconds:.1f} s at {TOKENS_PER_SECOND:.0f} tokens/s), the texts and "
        f"prompt about {prompt - audio}, and {what}: {over} tokens too many. "
        f"Use a reference about {math.ceil(over / TOKENS_PER_SECOND * 10) / 10:g} s shorter"
        + (", or a lower max_tokens." if requested is not None else "."),
        param=param,
        code="context_length_exceeded",
    )
