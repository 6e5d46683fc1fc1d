"""The Orpheus model family's vocabulary: token ids, the audio-token layout, and spellings.

A leaf: every layer may import it, it imports nothing of the gateway. Orpheus adds
its tokens after the 128256 ids of the Llama-3 vocabulary; id ``128256 + N`` is
spelled ``<custom_token_N>`` in text (what a completions server returns with
``skip_special_tokens=false``, and what a prompt written as text contains).

Audio tokens interleave SNAC's three codebooks in frames of seven, in the encoder's
order ``c0, c1a, c2a, c2b, c1b, c2c, c2d``. The token at frame position ``slot``
carrying code ``c`` has id ``AUDIO_TOKEN_BASE + slot * 4096 + c``, so every audio id
names its own slot.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

CUSTOM_TOKEN_BASE: Final = 128256
"""Id of ``<custom_token_0>``: the first id after the Llama-3 vocabulary."""
BOS: Final = 128000
"""``<|begin_of_text|>``."""
EOT: Final = 128009
"""``<|eot_id|>``, the end of a turn."""
START_OF_SPEECH: Final = 128257
END_OF_SPEECH: Final = 128258
START_OF_HUMAN: Final = 128259
END_OF_HUMAN: Final = 128260
START_OF_AI: Final = 128261
END_OF_AI: Final = 128262
PAD: Final = 128263

AUDIO_TOKEN_OFFSET: Final = 10
"""``<custom_token_10>`` is the first audio token (slot 0, code 0)."""
CODEBOOK_SIZE: Final = 4096
TOKENS_PER_FRAME: Final = 7
AUDIO_TOKEN_BASE: Final = CUSTOM_TOKEN_BASE + AUDIO_TOKEN_OFFSET
"""First audio id (slot 0, code 0)."""
AUDIO_TOKEN_END: Final = AUDIO_TOKEN_BASE + TOKENS_PER_FRAME * CODEBOOK_SIZE
"""One past the last audio id (slot 6, code 4095)."""

_LLAMA_SPECIALS: Final = {BOS: "<|begin_of_text|>", EOT: "<|eot_id|>"}


def audio_token_id(slot: int, code: int) -> int:
    """Token id carrying SNAC ``code`` at frame position ``slot``."""
    if not 0 <= slot < TOKENS_PER_FRAME:
        raise ValueError(f"slot must be in 0..{TOKENS_PER_FRAME - 1}, got {slot}")
    if not 0 <= code < CODEBOOK_SIZE:
        raise ValueError(f"code must be in 0..{CODEBOOK_SIZE - 1}, got {code}")
    return AUDIO_TOKEN_BASE + slot * CODEBOOK_SIZE + code


def token_slot_code(token_id: int) -> tuple[int, int] | None:
    """``(slot, code)`` of an audio token id, None for any other id."""
    if not AUDIO_TOKEN_BASE <= token_id < AUDIO_TOKEN_END:
        return None
    slot, code = divmod(token_id - AUDIO_TOKEN_BASE, CODEBOOK_SIZE)
    return slot, code


def spell(token_id: int) -> str:
    """The text a tokenizer turns back into exactly ``token_id`` (a control or audio token)."""
    if token_id >= CUSTOM_TOKEN_BASE:
        return f"<custom_token_{token_id - CUSTOM_TOKEN_BASE}>"
    special = _LLAMA_SPECIALS.get(token_id)
    if special is None:
        raise ValueError(f"token id {token_id} has no fixed spelling (not a special token)")
    return special


def spell_all(token_ids: Iterable[int]) -> str:
    """`spell` of each id, concatenated (a tokenizer splits them back one for one)."""
    return "".join(spell(t) for t in token_ids)
