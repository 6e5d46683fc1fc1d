"""Decoding rules that make an in-process generation emit only valid Orpheus audio.

At generated position ``p`` (0 = first token after the prompt) the only ids allowed are
the 4096 audio ids of frame slot ``p mod 7``, plus the request's stop ids (Orpheus:
``END_OF_SPEECH``, from the prompt adapter through ``GenerationParams``) at a frame
boundary (``p mod 7 == 0``), so a stream always stops on a whole frame and never wastes
a token on text.

`OrpheusAudioConstraint` is that rule as a plain masking processor, for any
``generate`` call. `OrpheusSampler` is what the engine runs: repetition penalty,
the constraint, temperature, top-p and the draw, with transformers' semantics, but
computed on the (at most 4097) allowed candidates instead of the whole vocabulary —
sorting and sampling 157k logits per token cost more than the tiny model itself.
It draws with its own ``torch.Generator``: transformers' sampler uses the
process-wide RNG that concurrent streams share, so a request's seed would neither
reproduce its output nor stay out of the other streams' way.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import LogitsProcessor

from app.vocab import CODEBOOK_SIZE, TOKENS_PER_FRAME, audio_token_id


def allowed_range(position: int) -> tuple[int, int, bool]:
    """``(first, end, stop_allowed)``: ids ``first..end-1`` are allowed at ``position``,
    and the stop ids too when ``stop_allowed`` (a frame boundary)."""
    if position < 0:
        raise ValueError(f"position must be >= 0, got {position}")
    slot = position % TOKENS_PER_FRAME
    first = audio_token_id(slot, 0)
    return first, first + CODEBOOK_SIZE, slot == 0


class OrpheusAudioConstraint(LogitsProcessor):
    """Masks every id but the current slot's audio ids (and the stop ids on boundaries).

    ``prompt_length`` is the length of ``input_ids`` when generation starts; every row
    of a batch is at the same position, as in any (left-padded) ``generate`` batch.
    Put it before temperature and top-p: nucleus filtering over the full vocabulary
    could otherwise leave no allowed token at all.
    """

    def __init__(self, prompt_length: int, stop_token_ids: Sequence[int]) -> None:
        self.prompt_length = prompt_length
        self.stop_token_ids = list(stop_token_ids)

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        first, end, stop_allowed = allowed_range(input_ids.shape[-1] - self.prompt_length)
        masked = torch.full_like(scores, float("-inf"))
        masked[:, first:end] = scores[:, first:end]
        if stop_allowed and self.stop_token_ids:
            masked[:, self.stop_token_ids] = scores[:, self.stop_token_ids]
        return masked


class OrpheusSampler(LogitsProcessor):
    """The whole decoding step for ``generate(do_sample=False)``.

    Returns scores where only the chosen token is finite, so ``generate``'s argmax
    picks it. Equivalent to transformers' ``RepetitionPenaltyLogitsProcessor``,
    `OrpheusAudioConstraint`, ``TemperatureLogitsWarper`` and ``TopPLogitsWarper`` in
    that order followed by a draw; ``temperature <= 0`` means greedy.
    """

    def __init__(
        self,
        prompt_length: int,
        *,
        stop_token_ids: Sequence[int],
        temperature: float,
        top_p: float,
        repetition_penalty: float,
        seed: int | None,
    ) -> None:
        if not 0.0 < top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p}")
        if repetition_penalty <= 0.0:
            raise ValueError(f"repetition_penalty must be > 0, got {repetition_penalty}")
        self.prompt_length = prompt_length
        self.stop_token_ids = list(stop_token_ids)
        self.temperature = temperature
        self.top_p = top_p
        self.repetition_penalty = repetition_penalty
        self._seed = seed
        self._generator: torch.Generator | None = None

    def candidates(
        self, input_ids: torch.LongTensor, scores: torch.FloatTensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(ids (k,), logits (batch, k))`` of the allowed tokens after penalty,
        temperature and top-p (tokens top-p removed are ``-inf``)."""
        first, end, stop_allowed = allowed_range(input_ids.shape[-1] - self.prompt_length)
        ids = torch.arange(first, end, device=scores.device)
        logits = scores[:, first:end].float()
        stops = self.stop_token_ids if stop_allowed else []
        if stops:
            ids = torch.cat([ids, ids.new_tensor(stops)])
            logits = torch.cat([logits, scores[:, stops].float()], 1)
        if self.repetition_penalty != 1.0:
            logits = self._penalize(input_ids, logits, first, stops)
        if self.temperature > 0.0:
            logits = logits / self.temperature
            if self.top_p < 1.0:
                logits = _top_p(logits, self.top_p)
        return ids, logits

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        ids, logits = self.candidates(input_ids, scores)
        if self.temperature > 0.0:
            probs = torch.softmax(logits, dim=-1)
            index = torch.multinomial(probs, 1, generator=self._rng(scores.device))
        else:
            index = logits.argmax(dim=-1, keepdim=True)
        # generate hands us its own copy of the logits: overwrite it instead of allocating.
        scores.fill_(float("-inf"))
        scores.scatter_(1, ids[index], 0.0)
        return scores

    def _penalize(
        self, input_ids: torch.Tensor, logits: torch.Tensor, first: int, stops: list[int]
    ) -> torch.Tensor:
        width = logits.shape[1]
        column = input_ids - first
        column = torch.where((column >= 0) & (column < CODEBOOK_SIZE), column, width)
        for offset, stop in enumerate(stops):
            column = torch.where(input_ids == stop, CODEBOOK_SIZE + offset, column)
        seen = torch.zeros((logits.shape[0], width + 1), dtype=torch.bool, device=logits.device)
        seen.scatter_(1, column, True)
        p = self.repetition_penalty
        return torch.where(seen[:, :width], torch.where(logits < 0, logits * p, logits / p), logits)

    def _rng(self, device: torch.device) -> torch.Generator:
        if self._generator is None:
            self._generator = torch.Generator(device=device)
            if self._seed is None:
                self._generator.seed()
            else:
                self._generator.manual_seed(self._seed)
        return self._generator


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """transformers' nucleus rule: drop the low tail whose mass is at most ``1 - top_p``."""
    ascending, order = torch.sort(logits, descending=False)
    cumulative = ascending.softmax(dim=-1).cumsum(dim=-1)
    drop = cumulative <= (1 - top_p)
    drop[..., -1:] = False
    return logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
