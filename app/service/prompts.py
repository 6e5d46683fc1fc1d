"""Prompt building per model family: one adapter per family, chosen once at start-up."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from typing import Protocol

from app.codec.tokens import CUSTOM_TOKEN_BASE, END_OF_SPEECH
from app.engine.base import Prompt

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

    `[128259] + tok("{voice}: {text}") + [128009, 128260, 128261, 128257]`, where the
    tokenizer adds BOS; the backend request sets add_special_tokens=false so the
    text below maps to exactly these ids.
    """

    family = "orpheus"
    stop_token_ids: tuple[int, ...] = (END_OF_SPEECH,)

    def speech_prompt(self, voice: str, text: str) -> Prompt:
        body = sanitize_text(text)
        return Prompt(
            text=(
                "<custom_token_3><|begin_of_text|>"
                f"{voice}: {body}"
                "<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
            )
        )

    def clone_prompt(
        self, reference_text: str, reference_tokens: Sequence[int], text: str
    ) -> Prompt:
        """Zero-shot layout: the reference as a completed turn, then the new text.

        `[SOH] + tok(ref) + [EOT, EOH, SOA, SOS] + audio + [EOS, EOA]` then
        `[SOH] + tok(text) + [EOT, EOH, SOA, SOS]`; tok adds BOS to both texts.
        """
        audio = "".join(f"<custom_token_{t - CUSTOM_TOKEN_BASE}>" for t in reference_tokens)
        return Prompt(
            text=(
                "<custom_token_3><|begin_of_text|>"
                f"{sanitize_text(reference_text)}"
                "<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
                f"{audio}"
                "<custom_token_2><custom_token_6>"
                "<custom_token_3><|begin_of_text|>"
                f"{sanitize_text(text)}"
                "<|eot_id|><custom_token_4><custom_token_5><custom_token_1>"
            )
        )
