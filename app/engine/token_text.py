"""Incremental extraction of `<custom_token_N>` ids from generated text deltas.

vLLM sends one token per delta, but llama.cpp or SGLang may put several tokens,
or half of one, in a delta; the unfinished tail is kept until the next delta.
Text that is not a token is reported as one `NON_TOKEN` per whitespace-separated
piece, so a caller can count how much junk the model produced. The result does
not depend on how the text was split into deltas.
"""

from __future__ import annotations

import re

from app.engine.base import NON_TOKEN
from app.vocab import CUSTOM_TOKEN_BASE

_PREFIX = "<custom_token_"
_PREFIX_LEN = len(_PREFIX)
_MAX_DIGITS = 9
TOKEN_SPELLING = re.compile(rf"<custom_token_([0-9]{{1,{_MAX_DIGITS}}})>")
"""One token's text; the group is its number (the id is `CUSTOM_TOKEN_BASE` + it)."""


def _could_become_token(tail: str) -> bool:
    """True when `tail` (starting with '<') is a prefix of some valid token spelling."""
    if len(tail) <= len(_PREFIX):
        return _PREFIX.startswith(tail)
    digits = tail[len(_PREFIX) :]
    return (
        tail.startswith(_PREFIX)
        and len(digits) <= _MAX_DIGITS
        and all("0" <= c <= "9" for c in digits)
    )


class TokenTextParser:
    """Feed text deltas with `feed`; call `close` at the end of the stream."""

    def __init__(self) -> None:
        self._tail = ""
        # Whether the text just before the tail is junk that a following piece of
        # junk (without whitespace in between) continues.
        self._in_junk = False

    @property
    def pending(self) -> int:
        """Characters held back until the next delta (a possibly unfinished token)."""
        return len(self._tail)

    def feed(self, text: str) -> list[int]:
        """Return the ids (and `NON_TOKEN`s) completed by this delta, in order."""
        if not text:
            return []
        if not self._tail and text.startswith(_PREFIX) and text.endswith(">"):
            # vLLM's delta: exactly one token, checked without the regular expression.
            digits = text[_PREFIX_LEN:-1]
            if 0 < len(digits) <= _MAX_DIGITS and digits.isascii() and digits.isdigit():
                self._in_junk = False
                return [CUSTOM_TOKEN_BASE + int(digits)]
        buffer = self._tail + text
        out: list[int] = []
        pos = 0
        for match in TOKEN_SPELLING.finditer(buffer):
            self._junk(buffer[pos : match.start()], out)
            out.append(CUSTOM_TOKEN_BASE + int(match.group(1)))
            self._in_junk = False
            pos = match.end()
        rest = buffer[pos:]
        cut = rest.rfind("<")
        if cut >= 0 and _could_become_token(rest[cut:]):
            self._junk(rest[:cut], out)
            self._tail = rest[cut:]
        else:
            self._junk(rest, out)
            self._tail = ""
        return out

    def token_arrived(self) -> None:
        """A whole token came by another path (with nothing pending): junk before it ended."""
        self._in_junk = False

    def close(self) -> list[int]:
        """End of text: an unfinished token is junk."""
        out: list[int] = []
        self._junk(self._tail, out)
        self._tail = ""
        self._in_junk = False
        return out

    def _junk(self, text: str, out: list[int]) -> None:
        if not text:
            return
        pieces = len(text.split())
        if pieces and self._in_junk and not text[0].isspace():
            pieces -= 1
        out.extend([NON_TOKEN] * pieces)
        self._in_junk = not text[-1].isspace()
