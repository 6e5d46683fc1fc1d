"""Symbols said as words ("&" -> "and", "=" -> "equals", "C++" -> "C plus plus"), markup
brackets removed, and symbols nobody would read aloud dropped.

Runs in two passes around the number rules: `speak_symbols_before` must see digits
("#5" -> "number 5", "~5" -> "about 5") and must not see the `+` of a phone number or
the `/` of "km/h", which `speak_symbols_after` handles once the numbers are words.
"""

from __future__ import annotations

import re
import unicodedata

# Angle brackets carry HTML and the spellings of control tokens (`<|eot_id|>`,
# `<custom_token_3>`). Whatever is between a pair goes; comparisons are spoken; any
# bracket left is dropped, so no output of normalization can spell a control token.
_ANGLE_PAIR = re.compile(r"<[^<>]*>")
_ANGLES = [
    (re.compile(r"<=|≤"), " less than or equal to "),
    (re.compile(r">=|≥"), " greater than or equal to "),
    (re.compile(r"->|→|=>|⇒"), " to "),
    (re.compile(r"(?<=[\w)])\s+<\s+(?=[\w(-])"), " less than "),
    (re.compile(r"(?<=[\w)])\s+>\s+(?=[\w(-])"), " greater than "),
    (re.compile(r"[<>]"), " "),
]
_BEFORE = [
    (re.compile(r"≠|!="), " does not equal "),
    (re.compile(r"≈"), " approximately "),
    (re.compile(r"=+"), " equals "),
    (re.compile(r"&"), " and "),
    (re.compile(r"@"), " at "),
    (re.compile(r"#(?=\d)"), "number "),
    (re.compile(r"~(?=\s?\d)"), "about "),
    (re.compile(r"×"), " times "),
    (re.compile(r"÷"), " divided by "),
    (re.compile(r"±"), " plus or minus "),
    (re.compile(r"§"), " section "),
    (re.compile(r"…"), "..."),
    (re.compile(r"[#~_|\\{}\[\]^`]"), " "),
]
_AFTER = [
    (re.compile(r"(?<=\w)\+\+"), " plus plus"),
    (re.compile(r"\+"), " plus "),
    (re.compile(r"\band/or\b"), "and or"),
    (re.compile(r"(?<=\w)/(?=\w)"), " slash "),
    (re.compile(r"(?<=\w)\s+\*\s+(?=\w)"), " times "),
    (re.compile(r"\*"), " "),
    (re.compile(r"%"), " percent "),
    (re.compile(r"°"), " degrees "),
    (re.compile(r"\$"), " dollars "),
    (re.compile(r"€"), " euros "),
    (re.compile(r"£"), " pounds "),
]
# Other symbols (✓ ★ ♪ ...), modifiers and unassigned or private characters.
_UNSPOKEN_CATEGORIES = frozenset({"So", "Sk", "Co", "Cn", "Cs"})


def strip_angle_brackets(text: str) -> str:
    """Remove `<...>` spans and speak or drop the other angle brackets in `text`."""
    text = _ANGLE_PAIR.sub(" ", text)
    for pattern, words in _ANGLES:
        text = pattern.sub(words, text)
    return text


def speak_symbols_before(text: str) -> str:
    """Symbols to speak while the numbers are still digits."""
    for pattern, words in _BEFORE:
        text = pattern.sub(words, text)
    return text


def speak_symbols_after(text: str) -> str:
    """Symbols to speak once the numbers are words, then drop the unspeakable ones."""
    for pattern, words in _AFTER:
        text = pattern.sub(words, text)
    if text.isascii():  # "^" and "`", ASCII's only such symbols, went in the first pass
        return text
    return "".join(ch for ch in text if unicodedata.category(ch) not in _UNSPOKEN_CATEGORIES)
