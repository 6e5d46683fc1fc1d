"""Cloning: reference → SNAC codes on the decoder worker → tokens → zero-shot prompt."""

from __future__ import annotations

import io
import math
import re
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.audio.pcm import SAMPLE_RATE, SAMPLES_PER_FRAME
from app.audio.reference import ReferenceLimits, load_reference
from app.codec.service import CodecService
from app.codec.snac import SnacCodec
from app.codec.tokens import FrameAssembler
from app.config import Settings
from app.errors import InvalidRequest
from app.protocol import SynthesisOptions
from app.service.cloning import (
    CLONE_CONTROL_TOKENS,
    MIN_GENERATION_TOKENS,
    VoiceReference,
    encode_reference,
    estimate_prompt_tokens,
    estimate_text_tokens,
    fit_max_tokens,
)
from app.service.jobs import JobBuilder, segment_budget
from app.service.prompts import _CONTROL_TOKEN, OrpheusAdapter
from app.vocab import (
    CUSTOM_TOKEN_BASE,
    END_OF_AI,
    END_OF_HUMAN,
    END_OF_SPEECH,
    START_OF_AI,
    START_OF_HUMAN,
    START_OF_SPEECH,
    audio_token_id,
)
from tests.support.clips import chirp, encode_clip

SPELLED = {"<|begin_of_text|>": "BOS", "<|eot_id|>": "EOT"}


def spell(token_id: int) -> str:
    return f"<custom_token_{token_id - CUSTOM_TOKEN_BASE}>"


def reference(frames: int, text: str = "ref", seed: int = 0) -> VoiceReference:
    codes = np.random.default_rng(seed).integers(0, 4096, size=(frames, 7))
    return VoiceReference(text=text, frames=codes)


async def test_encode_runs_on_the_worker_and_matches_the_codec(tiny_codec: SnacCodec) -> None:
    data = encode_clip(chirp(1.3, 16_000), 16_000, "flac")
    audio = load_reference(data, ReferenceLimits())
    threads: list[str] = []

    class Spy:
        def encode(self, pcm: np.ndarray) -> np.ndarray:
            threads.append(threading.current_thread().name)
            return tiny_codec.encode(pcm)

        def decode_batch(
            self, frames: np.ndarray, *, keep: tuple[int, int] | None = None, pad: int = 0
        ) -> np.ndarray:
            return tiny_codec.decode_batch(frames, keep=keep, pad=pad)

    service = CodecService(Spy())
    service.start()
    try:
        ref = await encode_reference(io.BytesIO(data), "hello", ReferenceLimits(), service)
    finally:
        service.close()
    assert threads and threads[0] != threading.current_thread().name
    expected = tiny_codec.encode(audio.pcm)
    np.testing.assert_array_equal(ref.frames, expected)
    assert len(ref.frames) == math.ceil(audio.pcm.size / SAMPLES_PER_FRAME)
    # Tokens are in the decoder's 7-slot order: the assembler reads them back exactly.
    assert len(ref.token_ids) == 7 * len(expected)
    np.testing.assert_array_equal(FrameAssembler(policy="fail").feed(ref.token_ids), expected)
    assert ref.seconds == pytest.approx(len(expected) * SAMPLES_PER_FRAME / SAMPLE_RATE)


def test_token_order_per_slot() -> None:
    ref = VoiceReference(
        text="t", frames=np.array([[1, 2, 3, 4, 5, 6, 7], [0, 0, 0, 0, 0, 0, 4095]])
    )
    assert ref.token_ids == tuple(
        audio_token_id(slot, code)
        for slot, code in [*enumerate([1, 2, 3, 4, 5, 6, 7]), *enumerate([0] * 6 + [4095])]
    )


def test_zero_shot_layout_exact() -> None:
    ref = reference(2, "Reference words.")
    prompt = OrpheusAdapter().clone_prompt(ref.text, ref.token_ids, "New words!")
    expected_ids = [
        START_OF_HUMAN, "BOS", "Reference words.", "EOT", END_OF_HUMAN, START_OF_AI,
        START_OF_SPEECH, *ref.token_ids, END_OF_SPEECH, END_OF_AI,
        START_OF_HUMAN, "BOS", "New words!", "EOT", END_OF_HUMAN, START_OF_AI, START_OF_SPEECH,
    ]  # fmt: skip
    spelled = "".join(
        {"BOS": "<|begin_of_text|>", "EOT": "<|eot_id|>"}.get(x, x)
        if isinstance(x, str)
        else spell(x)
        for x in expected_ids
    )
    assert prompt.text == spelled
    control = [t for t in _CONTROL_TOKEN.findall(prompt.text) if t not in map(spell, ref.token_ids)]
    assert len(control) == CLONE_CONTROL_TOKENS


@given(
    st.text(alphabet="<>|_abcdeot123 ", max_size=40),
    st.text(alphabet="<>|_abcdeot123 ", max_size=40),
)
def test_user_text_cannot_inject_tokens(ref_text: str, text: str) -> None:
    ref = reference(1, ref_text)
    prompt = OrpheusAdapter().clone_prompt(ref.text, ref.token_ids, text).text
    tokens = _CONTROL_TOKEN.findall(prompt)
    assert len(tokens) == CLONE_CONTROL_TOKENS + len(ref.token_ids)


def test_estimate_is_conservative_for_ascii_and_not() -> None:
    assert estimate_text_tokens("") == 0
    assert estimate_text_tokens("abc") == 1
    assert estimate_text_tokens("abcd") == 2
    assert estimate_text_tokens("héllo") == 2 + 1
    assert estimate_text_tokens("日本語") == 1 + 3


@given(
    frames=st.integers(1, 400),
    text_len=st.integers(0, 3000),
    requested=st.one_of(st.none(), st.integers(7, 5000)),
    default=st.integers(7, 4096),
    max_model_len=st.integers(64, 8192),
)
def test_fit_max_tokens(
    frames: int, text_len: int, requested: int | None, default: int, max_model_len: int
) -> None:
    ref = reference(frames, "r" * 30)
    text = "x" * text_len
    prompt = CLONE_CONTROL_TOKENS + 7 * frames + 10 + math.ceil(text_len / 3)
    assert estimate_prompt_tokens(ref, text) == prompt
    room = max_model_len - prompt
    try:
        got = fit_max_tokens(
            ref, text, requested=requested, default=default, max_model_len=max_model_len
        )
    except InvalidRequest as exc:
        wanted = requested if requested is not None else MIN_GENERATION_TOKENS
        assert wanted > room
        match = re.search(r"(\d+) tokens too many", exc.message)
        assert match is not None and int(match.group(1)) == wanted - room
        assert exc.code == "context_length_exceeded" and f"{7 * frames} tokens" in exc.message
    else:
        if requested is not None:
            assert got == requested <= room
        else:
            assert got == min(default, room) and got >= min(default, MIN_GENERATION_TOKENS)
        assert prompt + got <= max_model_len


def test_job_builder_clone_builds_the_job() -> None:
    settings = Settings(_env_file=None, max_model_len=1000, default_max_tokens=900)  # type: ignore[call-arg]
    jobs = JobBuilder(settings, OrpheusAdapter())
    options = SynthesisOptions(response_format="wav", temperature=0.2, seed=3)
    ref = reference(20, "Ref.")  # 140 audio tokens: a short text's own budget fits
    (segment,) = jobs.clone(ref, ["Hi"], options).segments
    assert segment.prompt == OrpheusAdapter().clone_prompt("Ref.", ref.token_ids, "Hi")
    assert segment.params.max_tokens == segment_budget("Hi") < 900
    assert segment.params.temperature == 0.2 and segment.params.seed == 3
    assert segment.params.stop_token_ids == (END_OF_SPEECH,)
    long_ref = reference(120, "Ref.")  # 840 audio tokens: the budget shrinks to the room
    (segment,) = jobs.clone(long_ref, ["Hi"], options).segments
    assert segment.params.max_tokens == 1000 - estimate_prompt_tokens(long_ref, "Hi")
    assert segment.params.max_tokens < segment_budget("Hi")
    with pytest.raises(InvalidRequest) as info:
        jobs.clone(ref, ["Hi"], SynthesisOptions(max_tokens=999))
    assert info.value.param == "max_tokens"
    with pytest.raises(InvalidRequest):
        jobs.clone(ref, ["   "], SynthesisOptions(), param="generate_text")
    # Several segments: each its own prompt; a client max_tokens is shared by length.
    texts = ["One short sentence.", "And a second, somewhat longer sentence than that."]
    job = jobs.clone(ref, texts, SynthesisOptions(max_tokens=700))
    assert [s.text for s in job.segments] == texts
    budgets = [s.params.max_tokens for s in job.segments]
    assert sum(budgets) <= 700 and budgets[0] < budgets[1]
