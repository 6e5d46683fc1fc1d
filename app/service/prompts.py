"""Prompt building per model family: one adapter per family, chosen once at start-up."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Final, Protocol

from app.engine.base import Prompt
from app.vocab import (
    BOS,
    END_OF_AI,
    END_OF_HUMAN,
    END_OF_SPEECH,
    EOT,
    START_OF_AI,
    START_OF_HUMAN,
    START_OF_SPEECH,
    spell_all,
)

# Spellings a tokenizer turns into control tokens: `<|eot_id|>`, `<custom_token_3>`,
# `<filler_7>`, `<|reserved_special_token_2|>`. User text must never carry them.
_CONTROL_TOKEN = re.compile(r"<\s*\|[^<>]*\|\s*>|<\s*[A-Za-z][A-Za-z_]*_\d+\s*>")


def sanitize_text(text: str) -> str:
    """Remove control-token spellings and control characters from user text.

    Removal repeats until nothing changes, so nested spellings such as
    `<custom_<custom_token_1>token_3>` cannot reassemble into a control token.
    """
    cleaned = "".join(
        " " if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") else ch for ch in text
    )
    while True:
        stripped = _CONTROL_TOKEN.sub("", cleaned)
        if stripped == cleaned:
            break
        cleaned = stripped
    return " ".join(cleaned.split())


class PromptAdapter(Protocol):
    """Turns (voice, text) into the prompt and stop tokens of one model family."""

    family: str
    stop_token_ids: tuple[int, ...]

    def speech_prompt(self, voice: str, text: str) -> Prompt: ...

    def clone_prompt(
        self, reference_text: str, reference_tokens: Sequence[int], text: str
    ) -> Prompt: ...


class OrpheusAdapter:
    """canopylabs/orpheus fine-tuned layout, spelled as text for completions servers.

    `[SOH] + tok("{voice}: {text}") + [EOT, EOH, SOA, SOS]`, where the tokenizer adds
    BOS; the backend request sets add_special_tokens=false, so the spelled text maps to
    exactly these ids (`app.vocab.spell`).
    """

    family = "orpheus"
    stop_token_ids: tuple[int, ...] = (END_OF_SPEECH,)

    def speech_prompt(self, voice: str, text: str) -> Prompt:
        return Prompt(text=_human_turn(f"{voice}: {sanitize_text(text)}"))

    def clone_prompt(
        self, reference_text: str, reference_tokens: Sequence[int], text: str
    ) -> Prompt:
        """Zero-shot layout: the reference as a completed turn, then the new text.

        `[SOH] + tok(ref) + [EOT, EOH, SOA, SOS] + audio + [EOS, EOA]` then
        `[SOH] + tok(text) + [EOT, EOH, SOA, SOS]`; tok adds BOS to both texts.
        """
        return Prompt(
            text=_human_turn(sanitize_text(reference_text))
            + spell_all(list(reference_tokens))
            + _AI_TURN_END
            + _human_turn(sanitize_text(text))
        )


_TURN_START: Final = spell_all([START_OF_HUMAN, BOS])
_TURN_END: Final = spell_all([EOT, END_OF_HUMAN, START_OF_AI, START_OF_SPEECH])
_AI_TURN_END: Final = spell_all([END_OF_SPEECH, END_OF_AI])


def _human_turn(body: str) -> str:
    """A human turn that hands over to the model's speech."""
    return _TURN_START + body + _TURN_END
