"""The Orpheus audio-token constraint and the engine's fused sampler."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import (
    LogitsProcessorList,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopPLogitsWarper,
)

from app.engine.constraints import OrpheusAudioConstraint, OrpheusSampler, allowed_range

VOCAB = 156940  # canopylabs/orpheus-3b-0.1-ft
END_OF_SPEECH = 128258


def satisfies(token: int, position: int) -> bool:
    """The rule as the Orpheus reference states it: <custom_token_N> at generated position
    p carries code N - 10 - (p mod 7) * 4096, valid in 0..4095; END_OF_SPEECH only ends
    whole frames."""
    if token == END_OF_SPEECH:
        return position % 7 == 0
    code = token - 128256 - 10 - (position % 7) * 4096
    return 0 <= code <= 4095


def make_case(
    seed: int, batch: int, prompt_length: int, position: int, spikes: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random logits plus huge spikes (often on forbidden ids) and a history that repeats
    some allowed ids, so a wrong mask, penalty or offset shows in the winner."""
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randn(batch, VOCAB, generator=gen) * 3
    for i, token in enumerate(spikes):
        scores[i % batch, token] = 50.0 + i
    first, end, _ = allowed_range(position)
    history = torch.randint(0, VOCAB, (batch, prompt_length + position), generator=gen)
    history[:, -1] = torch.randint(first, end, (batch,), generator=gen)
    return history, scores


case = st.tuples(
    st.integers(0, 2**31 - 1),
    st.integers(1, 3),
    st.integers(1, 40),
    st.integers(0, 400),
    st.lists(st.integers(0, VOCAB - 1) | st.just(END_OF_SPEECH), max_size=5),
)


def reference_chain(
    prompt_length: int, temperature: float, top_p: float, penalty: float
) -> LogitsProcessorList:
    """transformers' own processors around the plain mask: what the fused sampler must equal."""
    chain = LogitsProcessorList()
    if penalty != 1.0:
        chain.append(RepetitionPenaltyLogitsProcessor(penalty))
    chain.append(OrpheusAudioConstraint(prompt_length, [END_OF_SPEECH]))
    if temperature != 1.0:
        chain.append(TemperatureLogitsWarper(temperature))
    if top_p < 1.0:
        chain.append(TopPLogitsWarper(top_p))
    return chain


@settings(max_examples=30, deadline=None)
@given(case)
def test_mask_leaves_exactly_the_slot_codes_and_boundary_stop(
    params: tuple[int, int, int, int, list[int]],
) -> None:
    seed, batch, prompt_length, position, spikes = params
    history, scores = make_case(seed, batch, prompt_length, position, spikes)
    masked = OrpheusAudioConstraint(prompt_length, [END_OF_SPEECH])(history, scores.clone())
    for row in range(batch):
        finite = torch.nonzero(torch.isfinite(masked[row])).flatten().tolist()
        assert all(satisfies(t, position) for t in finite)
        assert len(finite) == 4096 + (position % 7 == 0)
        kept = torch.tensor(finite)
        assert torch.equal(masked[row, kept], scores[row, kept])
        assert satisfies(int(masked[row].argmax()), position)
        drawn = torch.multinomial(torch.softmax(masked[row], -1), 8, replacement=True)
        assert all(satisfies(int(t), position) for t in drawn)


Knobs = tuple[float, float, float]
"""A sampler's temperature, top_p and repetition penalty."""

sampling = st.tuples(
    st.sampled_from([0.0, 0.05, 0.4, 0.6, 1.0, 1.7]),
    st.sampled_from([0.05, 0.5, 0.9, 1.0]),
    st.sampled_from([1.0, 1.1, 1.5]),
)


def sampler_for(prompt_length: int, knobs: Knobs, seed: int | None) -> OrpheusSampler:
    """The fused sampler under test, stopping at END_OF_SPEECH."""
    temperature, top_p, penalty = knobs
    return OrpheusSampler(
        prompt_length,
        stop_token_ids=[END_OF_SPEECH],
        temperature=temperature,
        top_p=top_p,
        repetition_penalty=penalty,
        seed=seed,
    )


@settings(max_examples=30, deadline=None)
@given(case, sampling, st.integers(0, 2**31 - 1) | st.none())
def test_sampler_picks_one_allowed_token_the_reference_chain_allows(
    params: tuple[int, int, int, int, list[int]],
    knobs: Knobs,
    sample_seed: int | None,
) -> None:
    seed, batch, prompt_length, position, spikes = params
    temperature, top_p, penalty = knobs
    history, scores = make_case(seed, batch, prompt_length, position, spikes)
    sampler = sampler_for(prompt_length, knobs, seed=sample_seed)
    out = sampler(history, scores.clone())
    if temperature > 0:
        reference = reference_chain(prompt_length, temperature, top_p, penalty)(
            history, scores.clone()
        )
    else:
        reference = reference_chain(prompt_length, 1.0, 1.0, penalty)(history, scores.clone())
    for row in range(batch):
        finite = torch.nonzero(torch.isfinite(out[row])).flatten().tolist()
        assert len(finite) == 1
        token = finite[0]
        assert satisfies(token, position)
        assert int(out[row].argmax()) == token
        if temperature > 0:
            assert torch.isfinite(reference[row, token])
        else:
            assert token == int(reference[row].argmax())


@settings(max_examples=30, deadline=None)
@given(case, sampling.filter(lambda k: k[0] > 0))
def test_sampler_distribution_equals_transformers_processors(
    params: tuple[int, int, int, int, list[int]], knobs: Knobs
) -> None:
    seed, batch, prompt_length, position, spikes = params
    temperature, top_p, penalty = knobs
    history, scores = make_case(seed, batch, prompt_length, position, spikes)
    sampler = sampler_for(prompt_length, knobs, seed=0)
    ids, logits = sampler.candidates(history, scores.clone())
    expected = torch.softmax(
        reference_chain(prompt_length, temperature, top_p, penalty)(history, scores.clone()), -1
    )
    got = torch.zeros_like(expected)
    got[:, ids] = torch.softmax(logits, -1)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_seed_makes_draws_repeatable_and_distinct_seeds_differ() -> None:
    def draws(seed: int) -> list[int]:
        sampler = sampler_for(3, (1.0, 1.0, 1.0), seed=seed)
        history = torch.zeros((1, 3), dtype=torch.long)
        out = []
        for _ in range(21):
            scores = torch.zeros((1, VOCAB))
            token = int(sampler(history, scores).argmax())
            out.append(token)
            history = torch.cat([history, torch.tensor([[token]])], 1)
        return out

    first = draws(7)
    assert first == draws(7)
    assert first != draws(8)
    assert all(satisfies(t, p) for p, t in enumerate(first))


def test_allowed_range_rejects_negative_positions() -> None:
    with pytest.raises(ValueError):
        allowed_range(-1)
